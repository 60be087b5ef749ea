"""Helpers for the serving tests: a tiny bundle with a drift reference, images, a real server.

Also usable by other packages' tests (the bot's drift watcher, the local deployer) that need a
real `ganops serve` process to talk to.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.fakes.prometheus import free_port, terminate

REPO = Path(__file__).resolve().parents[2]


def scenes(n: int, seed: int, image_size: int = 32) -> np.ndarray:
    """n synthetic domain-A images (NxHxWx3 float in [0, 1]), a function of the seed."""
    from ganops.model.synthetic import random_scene, render

    rng = np.random.default_rng(seed)
    return np.stack([render(random_scene(rng), "A", image_size) for _ in range(n)])


def make_bundle(
    out_dir: Path, version: str = "7", window: int = 32, preset_name: str = "tiny"
) -> Path:
    """An untrained CUT generator (seeded) with a drift reference fitted on 200 scenes
    (seed 0) at the preset's image size."""
    import torch

    from ganops.model.bundle import save_bundle
    from ganops.model.config import preset
    from ganops.model.drift import fit_reference
    from ganops.model.networks import build_generator

    net = preset(preset_name)
    generator = build_generator(net, generator=torch.Generator().manual_seed(0))
    images = scenes(200, seed=0, image_size=net.image_size)
    reference = fit_reference(images, window=window, seed=0)
    meta = {"version": version, "data_digest": "sha256:test"}
    return save_bundle(out_dir, generator, net, meta, drift_reference=reference.to_dict())


def png_bytes(image: np.ndarray, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    """Encode an HxWx3 float image, converted to `mode`, as PNG/JPEG/GIF bytes."""
    pil = Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    pil.convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


def post(url: str, body: bytes, content_type: str = "image/png") -> tuple[int, bytes]:
    """POST and return (status, body), 4xx/5xx included."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def stylize_batch(base_url: str, images: np.ndarray) -> list[bytes]:
    """Send images as one JSON batch; return the PNG bytes of the outputs."""
    doc = {"images": [base64.b64encode(png_bytes(im)).decode() for im in images]}
    status, body = post(f"{base_url}/v1/stylize", json.dumps(doc).encode(), "application/json")
    if status != 200:
        raise AssertionError(f"batch failed with {status}: {body[:200]!r}")
    return [base64.b64decode(b) for b in json.loads(body)["images"]]


@dataclass
class ServerProcess:
    """A `ganops serve` subprocess on a free loopback port."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    log: tempfile._TemporaryFileWrapper[bytes]

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                if get(f"{self.url}/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError("server not ready")

    def stop(self, timeout: float = 20.0) -> int:
        return terminate(self.process, timeout)


def start_server(
    model_uri: str | Path, *extra: str, env: dict[str, str] | None = None
) -> ServerProcess:
    """Run `ganops serve` (through bot.cli, as the console script does) with `extra` args."""
    port = free_port()
    cmd: Sequence[str] = [
        sys.executable,
        "-m",
        "ganops.bot.cli",
        "serve",
        "--model-uri",
        str(model_uri),
        "--port",
        str(port),
        "--device",
        "cpu",
        *extra,
    ]
    # A file, not a pipe: a pipe nobody reads would block a chatty server.
    log = tempfile.NamedTemporaryFile(prefix="ganops-serve-", suffix=".log")  # noqa: SIM115
    process = subprocess.Popen(
        cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    return ServerProcess(process, f"http://127.0.0.1:{port}", port, log)
