"""Statistics of what the generator produces: the mean of each drift feature
(`model.features`) over the last `window` output images.

The canary analysis compares these means between two versions serving the same traffic: a
generator that washes images out, tints them or turns them to noise moves them, although its
inputs (and so its input drift score) look fine. The same features as the input drift monitor,
so that one vocabulary ("brightness", "saturation", ...) describes both sides.
"""

from __future__ import annotations

import threading

import numpy as np

from ganops.model.features import FEATURE_NAMES, N_FEATURES, image_features


class OutputStats:
    """A ring buffer of the last `window` output images' features; thread-safe, fixed memory
    (`window` x 8 floats whatever the traffic)."""

    def __init__(self, window: int = 256) -> None:
        if window < 1:
            raise ValueError(f"the output window must be at least 1 image, got {window}")
        self.window = window
        self._rows = np.zeros((window, N_FEATURES))
        self._count = 0  # images seen in all
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._count

    def add_images(self, images: np.ndarray) -> dict[str, float]:
        """Add NxHxWx3 (or HxWx3) images in [0, 1]; return the means after them."""
        return self.add(image_features(images))

    def add(self, features: np.ndarray) -> dict[str, float]:
        """Add rows of features (FEATURE_NAMES order); return the means after them."""
        every = np.atleast_2d(features)
        rows = every[-self.window :]  # older rows would be overwritten in the same call
        with self._lock:
            first = self._count + len(every) - len(rows)
            self._rows[(first + np.arange(len(rows))) % self.window] = rows
            self._count += len(every)
            return self._means()

    def means(self) -> dict[str, float]:
        """Feature -> mean over the window; empty before the first image."""
        with self._lock:
            return self._means()

    def _means(self) -> dict[str, float]:
        filled = min(self._count, self.window)
        if filled == 0:
            return {}
        means = self._rows[:filled].mean(axis=0)
        return {name: float(v) for name, v in zip(FEATURE_NAMES, means, strict=True)}


__all__ = ["OutputStats"]
