"""The online side of drift detection: a sliding window of request features, tested against a
calibrated `model.drift.DriftReference` every few images."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from ganops.model.drift import DriftReference
from ganops.model.drift_stats import DriftScore
from ganops.model.features import image_features


class DriftMonitor:
    """A sliding window of request features compared with a reference; thread-safe.

    `add_images` only queues the images; every `every` images their features are computed in
    one batch (numpy's per-call overhead dominates at request sizes, so this is several times
    cheaper than per image) and, once the window is full, the window is tested. Both costs are
    thus amortised over `every` images. The queued arrays are kept until then, so callers must
    not modify them. `last` is the latest evaluation.
    """

    def __init__(self, reference: DriftReference, every: int = 16) -> None:
        self.reference = reference
        self.every = max(1, every)
        self._kernel = reference.kernel()
        self._buffer = np.zeros((reference.window, len(reference.feature_names)))
        self._count = 0  # images in the window's history
        self._since = 0  # images since the last evaluation
        self._pending: list[np.ndarray] = []
        self._pending_count = 0  # queued images
        self._flushing = 0  # images whose features are being computed
        self._lock = threading.Lock()
        self.last = self._kernel.empty(0.0)
        # Set by `model.serving.drift_worker.DriftWorker`: images then go to its queue, and
        # features and tests run on its thread rather than in the request.
        self.offload: Callable[[np.ndarray], None] | None = None

    @property
    def count(self) -> int:
        """Images seen, queued ones included."""
        return self._count + self._pending_count + self._flushing

    @property
    def fill(self) -> float:
        return min(self.count, self.reference.window) / self.reference.window

    def add_images(self, images: np.ndarray) -> DriftScore | None:
        """Queue HxWx3 or NxHxWx3 images in [0, 1]. Returns a new score when this call ran an
        evaluation, else None (always None while offloaded)."""
        batch = images[None] if images.ndim == 3 else images
        if self.offload is not None:
            self.offload(batch)
            return None
        return self.add_images_now(batch)

    def add_images_now(self, batch: np.ndarray) -> DriftScore | None:
        """`add_images` on the caller's thread, whatever `offload` says."""
        with self._lock:
            self._pending.append(batch)
            self._pending_count += len(batch)
            if self._pending_count < self.every:
                return None
        return self._flush()

    def add(self, features: np.ndarray) -> DriftScore | None:
        """Add rows of raw features. Returns a new score when an evaluation ran, else None."""
        return self._add(features, flushed=0)

    def _add(self, features: np.ndarray, flushed: int) -> DriftScore | None:
        rows = self.reference.standardise(np.atleast_2d(features))
        with self._lock:
            self._flushing -= flushed
            for row in rows:
                self._buffer[self._count % self.reference.window] = row
                self._count += 1
            self._since += len(rows)
            if self._since < self.every or self._count < self.reference.window:
                return None
            return self._evaluate()

    def score(self) -> DriftScore:
        """Evaluate the current window now, queued images included (zeros until it is full)."""
        self._flush()
        with self._lock:
            if self._count < self.reference.window:
                return self._kernel.empty(self.fill)
            return self._evaluate()

    def _flush(self) -> DriftScore | None:
        with self._lock:
            pending, flushed = self._pending, self._pending_count
            self._pending, self._pending_count = [], 0
            self._flushing += flushed
        if not pending:
            return None
        # Features outside the lock: other requests keep queueing meanwhile.
        return self._add(image_features(np.concatenate(pending)), flushed)

    def _evaluate(self) -> DriftScore:
        self._since = 0
        self.last = self._kernel.evaluate(self._buffer.copy())
        return self.last
