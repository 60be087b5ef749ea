"""Capture: a sample of the inputs the model server sees, kept for the drift retrain.

Each request's decoded images are sampled independently at `rate` and written as PNG (at the
model's input size, as the model saw them) under `URI/<model>/<version>/<ms>-<id>.png`: the
directory says which version served them and the name when. Nothing else about the request is
kept (no client address, no headers). Files older than `days` are deleted when the server starts
and hourly after that; a retrain reads them through `list_captured`.

Writes happen on one background thread behind a bounded queue, so a slow store (S3, GCS) adds
no latency to requests: when the queue is full the sample is dropped and counted. Torch-free, so
the bot can count captured inputs; any fsspec URL works (a local folder, `s3://`, `gs://`, ...).
"""

from __future__ import annotations

import io
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import fsspec
import numpy as np

log = logging.getLogger("ganops.capture")

PRUNE_EVERY_S = 3600.0
# A drift retrain's snapshot keeps the captured inputs it trains on (also in trainA/) here too:
# the drift reference is fitted on them, since they are what the new version will serve. Here,
# not in model.drift (scipy), so the ingest step needs neither scipy nor torch.
CAPTURED_DIR = "capturedA"
_NAME = re.compile(r"^(\d{13})-[0-9a-f]{8}\.png$")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class CaptureConfig:
    rate: float = 0.0  # share of served images kept; 0: capture off
    uri: str | None = None  # a folder or any fsspec URL
    days: float = 30.0  # retention

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"capture rate must be within [0, 1], got {self.rate}")
        if self.days <= 0:
            raise ValueError(f"capture retention must be positive, got {self.days} days")
        if self.rate > 0 and not self.uri:
            raise ValueError("a capture rate needs a capture URI")


@dataclass(frozen=True)
class Captured:
    path: str  # the fsspec path (without the protocol for remote stores)
    model: str
    version: str
    time: float  # epoch seconds when it was served


def version_dir(uri: str, model: str, version: str) -> str:
    return f"{uri.rstrip('/')}/{_SAFE.sub('_', model)}/{_SAFE.sub('_', version)}"


def list_captured(
    uri: str,
    *,
    model: str | None = None,
    version: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[Captured]:
    """The captured inputs under `uri`, oldest first, filtered by model, version and time."""
    fs, root = fsspec.core.url_to_fs(uri)
    if not fs.exists(root):
        return []
    found = []
    for path in fs.find(root):
        parts = path[len(root.rstrip("/")) :].strip("/").split("/")
        match = _NAME.match(parts[-1])
        if len(parts) != 3 or match is None:
            continue
        item = Captured(path, parts[0], parts[1], int(match.group(1)) / 1000.0)
        if model is not None and item.model != _SAFE.sub("_", model):
            continue
        if version is not None and item.version != _SAFE.sub("_", version):
            continue
        if (since is not None and item.time < since) or (until is not None and item.time > until):
            continue
        found.append(item)
    return sorted(found, key=lambda c: (c.time, c.path))


def read_captured(uri: str, item: Captured) -> bytes:
    fs, _ = fsspec.core.url_to_fs(uri)
    with fs.open(item.path, "rb") as f:
        data: bytes = f.read()
    return data


def prune(uri: str, *, days: float, now: float | None = None) -> int:
    """Delete captured inputs older than `days`; returns how many were deleted."""
    cutoff = (time.time() if now is None else now) - days * 86400.0
    old = [c for c in list_captured(uri) if c.time < cutoff]
    if old:
        fs, _ = fsspec.core.url_to_fs(uri)
        fs.rm([c.path for c in old])
    return len(old)


class CaptureSink:
    """Samples served images and writes them in the background; thread-safe."""

    def __init__(
        self,
        config: CaptureConfig,
        *,
        model: str,
        version: str,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        queue_size: int = 256,
    ) -> None:
        if not config.uri:
            raise ValueError("capture needs a URI")
        self.config, self.uri = config, config.uri
        self.dir = version_dir(config.uri, model, version)
        self.stored = self.dropped = 0
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()
        self._clock = clock
        self._queue: queue.Queue[tuple[float, np.ndarray] | None] = queue.Queue(queue_size)
        self._fs, self._root = fsspec.core.url_to_fs(self.dir)
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def offer(self, images: np.ndarray) -> int:
        """Sample a batch (NxHxWx3 float in [0, 1]); returns how many were queued."""
        with self._rng_lock:
            keep = self._rng.random(len(images)) < self.config.rate
        queued, now = 0, self._clock()
        for image in np.asarray(images)[keep]:
            try:
                self._queue.put_nowait((now, image))
                queued += 1
            except queue.Full:
                self.dropped += 1
        return queued

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued sample is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        next_prune = 0.0
        while True:
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY_S
                self._prune()
            try:
                item = self._queue.get(timeout=60.0)
            except queue.Empty:
                continue
            try:
                if item is None:
                    return
                self._write(*item)
            except Exception:  # a failing store must never take the server down
                self.dropped += 1
                log.exception("capture: cannot write to %s", self.dir)
            finally:
                self._queue.task_done()

    def _write(self, served_at: float, image: np.ndarray) -> None:
        from PIL import Image

        pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
        self._fs.makedirs(self._root, exist_ok=True)
        name = f"{int(served_at * 1000):013d}-{uuid.uuid4().hex[:8]}.png"
        with self._fs.open(f"{self._root}/{name}", "wb") as f:
            f.write(buffer.getvalue())
        self.stored += 1

    def _prune(self) -> None:
        try:
            deleted = prune(self.uri, days=self.config.days, now=self._clock())
        except Exception:  # retention is retried at the next pass
            log.exception("capture: cannot prune %s", self.uri)
            return
        if deleted:
            log.info("capture: deleted %d inputs older than %g days", deleted, self.config.days)


def make_sink(config: CaptureConfig, *, model: str, version: str) -> CaptureSink | None:
    """The server's sink, or None when capture is off."""
    if config.rate <= 0 or not config.uri:
        return None
    return CaptureSink(config, model=model, version=version)


__all__ = [
    "CAPTURED_DIR",
    "CaptureConfig",
    "CaptureSink",
    "Captured",
    "list_captured",
    "make_sink",
    "prune",
    "read_captured",
    "version_dir",
]
