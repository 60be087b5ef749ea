"""Image statistics off the request path: a bounded queue of images and one thread that turns
them into features and updates the gauges. Input images feed the `DriftMonitor` (the drift
score); output images feed the `OutputStats` (the output feature means a canary is judged by).

A full queue drops the batch (counted): both are statistics over many requests, so losing a
few under load costs little, whereas making requests wait for them would cost every client.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Literal

import numpy as np

from ganops.model.drift_stats import DriftScore
from ganops.model.serving.drift_monitor import DriftMonitor
from ganops.model.serving.output_stats import OutputStats

log = logging.getLogger("ganops.serve")

OnScore = Callable[[DriftScore | None, float], None]
OnOutputs = Callable[[dict[str, float]], None]
Kind = Literal["inputs", "outputs"]


class DriftWorker:
    """Consumes image batches on a daemon thread; `max_queued` batches at most, inputs and
    outputs together. `monitor` (inputs) and `outputs` are each optional."""

    def __init__(
        self,
        monitor: DriftMonitor | None,
        *,
        on_score: OnScore,
        on_drop: Callable[[], None],
        max_queued: int = 64,
        outputs: OutputStats | None = None,
        on_outputs: OnOutputs | None = None,
        on_output_drop: Callable[[], None] | None = None,
    ) -> None:
        self.monitor = monitor
        self.outputs = outputs
        self._on_score = on_score
        self._on_drop = on_drop
        self._on_outputs = on_outputs
        self._on_output_drop = on_output_drop
        self._queue: queue.Queue[tuple[Kind, np.ndarray] | None] = queue.Queue(maxsize=max_queued)
        self._thread = threading.Thread(target=self._run, name="drift-worker", daemon=True)

    def start(self) -> None:
        if self.monitor is not None:
            self.monitor.offload = self.submit
        self._thread.start()

    def submit(self, batch: np.ndarray) -> None:
        """Queue input images for the drift monitor."""
        # A copy: the caller's array is released with the request.
        self._put("inputs", np.array(batch, copy=True), self._on_drop)

    def submit_outputs(self, batch: np.ndarray) -> None:
        """Queue output images (NxHxWx3 in [0, 1]) for the output statistics. Not copied: the
        predictor hands over an array that nothing writes to afterwards."""
        if self.outputs is not None:
            self._put("outputs", batch, self._on_output_drop)

    def _put(self, kind: Kind, batch: np.ndarray, on_drop: Callable[[], None] | None) -> None:
        try:
            self._queue.put_nowait((kind, batch))
        except queue.Full:
            if on_drop is not None:
                on_drop()

    def wait_idle(self) -> None:
        """Block until every queued batch is processed (tests, shutdown)."""
        self._queue.join()

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.offload = None
        self._queue.put(None)
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            items = [item, *self._take_queued()]
            try:
                # One feature pass per kind over everything waiting: numpy's per-call cost is
                # amortised.
                self._inputs([b for k, b in items if k == "inputs"])
                self._outputs([b for k, b in items if k == "outputs"])
            finally:
                for _ in items:
                    self._queue.task_done()
        self._queue.task_done()

    def _inputs(self, batches: list[np.ndarray]) -> None:
        if not batches or self.monitor is None:
            return
        try:
            score = self.monitor.add_images_now(np.concatenate(batches))
            self._on_score(score, self.monitor.fill)
        except Exception:  # a bad batch must not stop drift monitoring for good
            log.exception("drift evaluation failed")

    def _outputs(self, batches: list[np.ndarray]) -> None:
        if not batches or self.outputs is None:
            return
        try:
            means = self.outputs.add_images(np.concatenate(batches))
            if self._on_outputs is not None:
                self._on_outputs(means)
        except Exception:  # likewise for the output statistics
            log.exception("output statistics failed")

    def _take_queued(self) -> list[tuple[Kind, np.ndarray]]:
        taken: list[tuple[Kind, np.ndarray]] = []
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
