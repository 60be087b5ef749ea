"""The model server's frozen configuration. A leaf of `model.serving`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ganops.model.serving.capture import CaptureConfig


@dataclass(frozen=True)
class ServeConfig:
    model_uri: str
    host: str = "127.0.0.1"
    port: int = 8080
    window: int | None = None  # None: the window the drift reference was calibrated for
    max_bytes: int = 8 * 1024 * 1024
    max_batch: int = 16
    drift_every: int = 16
    device: str = "auto"
    tracking_uri: str | None = None
    drift_reference: Path | None = None
    max_inflight: int = 8  # requests decoding / running / encoding at once; more get 503
    deadline: float = 30.0  # seconds from the request's headers to its answer; then 504
    # Pixels per request, summed over the batch (decoded float32 RGB takes 12 bytes a pixel).
    max_pixels: int = 4096 * 4096
    drift_queue: int = 64  # image batches waiting for drift evaluation; more are dropped
    # Output images whose feature means `gan_output_feature` reports (the canary analysis).
    output_window: int = 256
    log_format: str = "text"
    # The OIP v2 model name; None: `ganops-<model>`. KServe routes by the InferenceService's
    # name, so a server behind one answers to that.
    model_name: str | None = None
    # The version the server reports (metrics, OIP); None: the bundle's. A bundle fetched by
    # KServe's storage initializer is a plain folder that does not know its registry version.
    model_version: str | None = None
    capture: CaptureConfig = field(default_factory=CaptureConfig)


__all__ = ["ServeConfig"]
