"""Checkpoints written off the training loop's thread.

A synchronous checkpoint stalls every rank for the whole write (a full CUT checkpoint is
~220 MB, and an upload to object storage takes seconds). Here the loop only takes a CPU copy
of the state (a device-to-host copy, fast next to disk or network) and hands it over; one
writer thread writes it locally (atomically, via `save_checkpoint`) and then to the durable
URL, if any. At most one write is in flight: a newer checkpoint handed over while one is
being written replaces the waiting one, since only the newest matters for a resume.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import torch

from ganops.model import storage
from ganops.model.checkpoint import CheckpointError, save_checkpoint


def cpu_copy(obj: Any) -> Any:
    """`obj` with every tensor copied to host memory, so training can go on mutating its own."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [cpu_copy(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(cpu_copy(v) for v in obj)
    return obj


class CheckpointWriter:
    """Writes the newest handed-over checkpoint to `path` and then to `durable_url`."""

    def __init__(self, path: Path, durable_url: str | None = None) -> None:
        self.path, self.durable_url = path, durable_url
        self._cond = threading.Condition()
        self._pending: dict[str, Any] | None = None
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self.writes = 0
        self.write_seconds = 0.0
        self._thread = threading.Thread(target=self._loop, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def submit(self, payload: dict[str, Any]) -> None:
        """Queue `payload` (already on the CPU, not shared with training) for writing.

        Raises:
            CheckpointError: an earlier write failed (durability must not fail silently).
        """
        with self._cond:
            self._raise_error()
            self._pending = payload
            self._cond.notify_all()

    def flush(self) -> None:
        """Wait until every handed-over checkpoint is written.

        Raises:
            CheckpointError: a write failed.
        """
        with self._cond:
            self._cond.wait_for(lambda: (self._pending is None and not self._busy) or self._error)
            self._raise_error()

    def close(self) -> None:
        """Flush, then stop the thread."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            exc = self._error
            raise CheckpointError(f"writing checkpoint {self.path} failed: {exc}") from exc

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._pending is None:
                    return
                payload, self._pending, self._busy = self._pending, None, True
            try:
                began = time.perf_counter()
                self._write(payload)
                self.write_seconds += time.perf_counter() - began
                self.writes += 1
            except BaseException as exc:  # reported to the loop at its next hand-over
                with self._cond:
                    self._error = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, payload: dict[str, Any]) -> None:
        save_checkpoint(self.path, payload)
        if self.durable_url:
            storage.upload(self.path, self.durable_url)
