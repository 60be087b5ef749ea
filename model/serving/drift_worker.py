"""Drift evaluation off the request path: a bounded queue of images and one thread that turns
them into features, feeds the `DriftMonitor` and updates the gauges.

A full queue drops the batch (counted): drift is a statistic over many requests, so losing a
few under load costs little, whereas making requests wait for it would cost every client.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

import numpy as np

from ganops.model.drift_stats import DriftScore
from ganops.model.serving.drift_monitor import DriftMonitor

log = logging.getLogger("ganops.serve")

OnScore = Callable[[DriftScore | None, float], None]


class DriftWorker:
    """Consumes image batches for `monitor` on a daemon thread; `max_queued` batches at most."""

    def __init__(
        self,
        monitor: DriftMonitor,
        *,
        on_score: OnScore,
        on_drop: Callable[[], None],
        max_queued: int = 64,
    ) -> None:
        self.monitor = monitor
        self._on_score = on_score
        self._on_drop = on_drop
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=max_queued)
        self._thread = threading.Thread(target=self._run, name="drift-worker", daemon=True)

    def start(self) -> None:
        self.monitor.offload = self.submit
        self._thread.start()

    def submit(self, batch: np.ndarray) -> None:
        try:
            # A copy: the caller's array is released with the request.
            self._queue.put_nowait(np.array(batch, copy=True))
        except queue.Full:
            self._on_drop()

    def wait_idle(self) -> None:
        """Block until every queued batch is processed (tests, shutdown)."""
        self._queue.join()

    def stop(self) -> None:
        self.monitor.offload = None
        self._queue.put(None)
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            batches = [batch, *self._take_queued()]
            try:
                # One feature pass over everything waiting: numpy's per-call cost is amortised.
                score = self.monitor.add_images_now(np.concatenate(batches))
                self._on_score(score, self.monitor.fill)
            except Exception:  # a bad batch must not stop drift monitoring for good
                log.exception("drift evaluation failed")
            finally:
                for _ in batches:
                    self._queue.task_done()
        self._queue.task_done()

    def _take_queued(self) -> list[np.ndarray]:
        taken: list[np.ndarray] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return taken
            if item is None:  # stop after this round
                self._queue.task_done()
                self._queue.put(None)
                return taken
            taken.append(item)
