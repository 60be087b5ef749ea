"""The serving core, independent of HTTP: decode, forward, encode, and feed the drift monitor.

`model.serving.server` puts an HTTP server around it; a KServe `Model` (or any other front end) would
call the same three methods: `decode(bytes)`, `predict(images)`, `encode(image)`.
Inputs are resized to the model's square input size, so outputs come at that size.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from ganops.model.drift import DriftReference, DriftScore
from ganops.model.serving.drift_monitor import DriftMonitor

if TYPE_CHECKING:
    from ganops.model.bundle import Bundle
    from ganops.model.serving.capture import CaptureSink

log = logging.getLogger("ganops.serve")

FORMATS = frozenset({"PNG", "JPEG"})
MAX_SIDE = 8192  # larger images are refused before decoding (decompression bombs)


class InputError(ValueError):
    """A request the server refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ModelError(RuntimeError):
    """The model itself failed on a valid request (e.g. NaN weights): answered 500 with this
    message, since the client can do nothing about it."""


@dataclass(frozen=True)
class Prediction:
    outputs: list[np.ndarray]  # HxWx3 float32 in [0, 1]
    drift: DriftScore | None  # a new drift evaluation, when this batch triggered one


class Predictor:
    """A loaded generator with its preprocessing and, when the bundle has one, drift monitor."""

    def __init__(
        self,
        generator: nn.Module,
        image_size: int,
        model: str = "model",
        version: str = "unknown",
        monitor: DriftMonitor | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.generator = generator.eval()
        self.image_size = image_size
        self.model = model
        self.version = version
        self.monitor = monitor
        self.device = torch.device(device)
        # One forward at a time: concurrent forwards only fight over the same cores (CPU) or
        # stream (GPU); decoding and encoding still run in parallel in the request threads.
        self._forward_lock = threading.Lock()
        self.capture: CaptureSink | None = None  # a sample of inputs for the drift retrain
        # Where output images go for their statistics (`DriftWorker.submit_outputs`); None: off.
        self.output_sink: Callable[[np.ndarray], None] | None = None

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        window: int | None = None,
        drift_every: int = 16,
        drift_reference: dict[str, Any] | None = None,
    ) -> Predictor:
        """Wrap a loaded bundle. `window` recalibrates the drift reference for that size;
        `drift_reference` (a `DriftReference.to_dict()`) overrides the bundle's own."""
        ref_dict = drift_reference if drift_reference is not None else bundle.drift_reference
        monitor = None
        if ref_dict is not None:
            reference = DriftReference.from_dict(ref_dict)
            if reference.image_size not in (None, bundle.net.image_size):
                # Sharpness and noise depend on resolution: expect a standing false alarm.
                log.warning(
                    "drift reference was fitted on %s px images, the model takes %s px",
                    reference.image_size,
                    bundle.net.image_size,
                )
            if window is not None:
                reference = reference.with_window(window)
            monitor = DriftMonitor(reference, every=drift_every)
        device = next(iter(bundle.generator.parameters())).device
        return cls(
            bundle.generator,
            bundle.net.image_size,
            model=bundle.model,
            version=bundle.version or "unknown",
            monitor=monitor,
            device=device,
        )

    def decode(self, data: bytes) -> np.ndarray:
        """PNG/JPEG bytes -> HxWx3 float32 in [0, 1] at the model's size.

        Any mode (grey, RGBA, palette, 16-bit) is converted to RGB.

        Raises:
            InputError: empty, not PNG/JPEG, too large, or truncated/corrupt.
        """
        if not data:
            raise InputError("empty image")
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise InputError("image too large (decompression bomb guard)", 413) from None
        except (UnidentifiedImageError, OSError, ValueError):
            raise InputError("not an image: send PNG or JPEG bytes") from None
        with image:
            if image.format not in FORMATS:
                raise InputError(f"unsupported image format {image.format}; send PNG or JPEG", 415)
            if max(image.size) > MAX_SIDE:
                raise InputError(f"image too large: {image.size[0]}x{image.size[1]} px", 413)
            try:
                image.load()
                rgb = _to_rgb(image)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                raise InputError("truncated or corrupt image") from None
        if rgb.size != (self.image_size, self.image_size):
            rgb = rgb.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        return np.asarray(rgb, dtype=np.float32) / 255.0

    def fit(self, image: np.ndarray) -> np.ndarray:
        """An HxWx3 float image in [0, 1] (a UINT8 or FP32 tensor's) at the model's size,
        resized as `decode` resizes files (bicubic), in float so FP32 inputs keep precision."""
        side = self.image_size
        if image.shape[:2] == (side, side):
            return np.ascontiguousarray(image, dtype=np.float32)
        channels = [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32)).resize(
                    (side, side), Image.Resampling.BICUBIC
                )
            )
            for c in range(3)
        ]
        return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)

    def predict(self, images: list[np.ndarray]) -> Prediction:
        """Translate a batch of decoded images; record their features for drift."""
        batch = np.stack(images)
        drift = self.monitor.add_images(batch) if self.monitor is not None else None
        if self.capture is not None:
            self.capture.offer(batch)
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device) * 2.0 - 1.0
        with self._forward_lock, torch.inference_mode():
            y = self.generator(x)
        # Before the clamp, which would turn inf into a plausible white: a broken generator
        # (NaN or inf weights) must fail its requests, not serve black or white images. One
        # sum carries any NaN or inf through (40x cheaper than an elementwise isfinite at
        # 16x256 px on a CPU core); float32 accumulation, so half outputs cannot overflow it
        # (finite outputs near 1e38, whose sum overflows, are broken too).
        if not bool(torch.isfinite(y.sum(dtype=torch.float32))):
            raise ModelError(
                f"model {self.model} v{self.version} produced non-finite output (NaN or inf); "
                "the model is broken"
            )
        out = ((y.float().clamp(-1.0, 1.0) + 1.0) * 0.5).permute(0, 2, 3, 1).cpu().numpy()
        if self.output_sink is not None:
            self.output_sink(out)
        return Prediction(outputs=list(out), drift=drift)

    def warmup(self) -> None:
        """Decode, forward and encode a blank image without touching the drift window, so the
        first request does not pay for lazy set-up (PIL plugins, torch kernels)."""
        blank = np.zeros((self.image_size, self.image_size, 3), dtype=np.float32)
        x = torch.from_numpy(self.decode(self.encode(blank))[None]).permute(0, 3, 1, 2)
        with self._forward_lock, torch.inference_mode():
            self.generator(x.to(self.device))

    @staticmethod
    def encode(image: np.ndarray) -> bytes:
        """HxWx3 float in [0, 1] -> PNG bytes (fast compression: latency over size)."""
        pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any mode; 16-bit and float grey are rescaled rather than clipped."""
    if image.mode in {"I", "I;16", "I;16B", "I;16L", "F"}:
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode != "F" else max(float(values.max()), 1.0)
        grey = (np.clip(values / top, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        # Composite onto white: transparent pixels would otherwise be whatever colour they hold.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")
