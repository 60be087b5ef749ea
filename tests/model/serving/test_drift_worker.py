"""Drift evaluation on its own thread: the same scores as inline, and drops when full."""

from __future__ import annotations

import threading

import numpy as np

from ganops.model.drift import fit_reference
from ganops.model.serving.drift_monitor import DriftMonitor
from ganops.model.serving.drift_worker import DriftWorker
from tests.fakes.serving import scenes


def monitor() -> DriftMonitor:
    return DriftMonitor(fit_reference(scenes(120, seed=0), window=16, seed=0), every=4)


def test_the_worker_scores_what_the_request_path_would() -> None:
    images = scenes(40, seed=3)
    inline = monitor()
    for i in range(0, 40, 2):
        inline.add_images(images[i : i + 2])
    offloaded = monitor()
    seen: list[float] = []
    worker = DriftWorker(
        offloaded, on_score=lambda s, fill: seen.append(fill), on_drop=lambda: None
    )
    worker.start()
    for i in range(0, 40, 2):
        assert offloaded.add_images(images[i : i + 2]) is None  # never on the caller's thread
    worker.wait_idle()
    worker.stop()
    assert seen
    assert seen[-1] == 1.0
    assert np.isclose(offloaded.score().score, inline.score().score)


def test_a_full_queue_drops_and_counts() -> None:
    target = monitor()
    gate, entered = threading.Event(), threading.Event()
    drops: list[int] = []

    def blocked(score: object, fill: float) -> None:
        entered.set()
        gate.wait(10)  # the worker holds its first batch while the queue fills

    worker = DriftWorker(target, on_score=blocked, on_drop=lambda: drops.append(1), max_queued=2)
    worker.start()
    images = scenes(8, seed=4)
    target.add_images(images[:1])
    assert entered.wait(10)  # the worker is busy with the first batch
    for image in images[1:]:
        target.add_images(image)
    assert len(drops) == 5  # 7 more batches, 2 queued
    gate.set()
    worker.wait_idle()
    worker.stop()
    assert target.count == 3
