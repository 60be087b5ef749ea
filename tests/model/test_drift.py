"""Drift: the statistics against scipy, calibration, and alarms on real shifts (not on none)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from ganops.model.data import DriftKnobs, apply_knobs, make_synthetic
from ganops.model.drift import DriftReference, fit_reference
from ganops.model.drift_stats import (
    KernelReference,
    SortedReference,
    ks_statistics,
    rbf_kernel,
    split_ks,
    split_masks,
    split_mmd2,
)
from ganops.model.features import FEATURE_NAMES, image_features
from ganops.model.serving.drift_monitor import DriftMonitor
from ganops.model.synthetic import random_scene, render

WINDOW = 64


def scenes(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([render(random_scene(rng), "A", 32) for _ in range(n)])


@pytest.fixture(scope="module")
def reference() -> DriftReference:
    return fit_reference(scenes(200, seed=0), window=WINDOW, seed=0)


@pytest.fixture(scope="module")
def fresh() -> np.ndarray:
    """Drift-free images the reference never saw."""
    return scenes(320, seed=1)


def first_alarm(monitor: DriftMonitor, images: np.ndarray) -> int | None:
    """Feed images one request at a time; the 1-based index of the first score > 1."""
    for i, image in enumerate(images, start=1):
        score = monitor.add_images(image)
        if score is not None and score.score > 1.0:
            return i
    return None


def test_features_react_to_what_they_name() -> None:
    images = scenes(32, seed=5)
    rng = np.random.default_rng(0)
    base = image_features(images).mean(axis=0)
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}
    brighter = image_features(np.clip(images + 0.1, 0, 1)).mean(axis=0)
    flatter = image_features(
        np.stack([apply_knobs(im, DriftKnobs(contrast=0.5), rng) for im in images])
    )
    noisy = image_features(
        np.stack([apply_knobs(im, DriftKnobs(noise=0.05), rng) for im in images])
    )
    assert brighter[col["brightness"]] > base[col["brightness"]] + 0.05
    assert flatter.mean(axis=0)[col["contrast"]] < 0.7 * base[col["contrast"]]
    assert noisy.mean(axis=0)[col["noise"]] > 3 * base[col["noise"]]
    with pytest.raises(ValueError, match="NxHxWx3"):
        image_features(np.zeros((2, 8, 8)))


def test_ks_statistics_equal_scipy_with_ties() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 4)).round(1)  # rounding makes ties
    y = rng.normal(0.3, 1.2, size=(37, 4)).round(1)
    y[:5] += 40.0  # far outliers, as a badly drifted window has
    ours = ks_statistics(x, y)
    presorted = SortedReference(x).distances(y)  # the server's path: x sorted once
    for j in range(4):
        expected = stats.ks_2samp(x[:, j], y[:, j]).statistic
        assert ours[j] == pytest.approx(expected, abs=1e-12)
        assert presorted[j] == pytest.approx(expected, abs=1e-12)


def test_batched_null_equals_one_split_at_a_time() -> None:
    rng = np.random.default_rng(4)
    pool = rng.normal(size=(60, 3))
    ref_mask, win_mask = split_masks(60, 40, 16, 5, rng)
    mmd = split_mmd2(rbf_kernel(pool, pool, 1.3), ref_mask, win_mask)
    ks = split_ks(pool, ref_mask, win_mask)
    for t in range(5):
        ref, win = pool[ref_mask[t] > 0], pool[win_mask[t] > 0]
        assert (len(ref), len(win)) == (40, 16)
        single = KernelReference.build(ref, 1.3, 1.0, np.ones(3), 1.0, ("a", "b", "c"))
        assert single.evaluate(win).mmd2 == pytest.approx(mmd[t], abs=1e-12)
        np.testing.assert_allclose(ks[t], ks_statistics(ref, win), atol=1e-12)


def test_calibration_reports_its_rates(reference: DriftReference) -> None:
    cal = reference.calibration
    assert cal["design_fpr"] == pytest.approx(0.01 * 0.1)
    assert cal["n_reference"] + cal["n_held_out"] == 200
    assert cal["n_held_out"] >= WINDOW
    # Measured on simulated windows independent of those that set the threshold.
    assert 0.0 <= cal["measured_fpr"] <= 0.01
    assert reference.scale > 0
    assert reference.mmd_threshold > 0


def test_reference_round_trips_through_json(reference: DriftReference, fresh: np.ndarray) -> None:
    again = DriftReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    window = reference.standardise(image_features(fresh[:WINDOW]))
    a, b = reference.kernel().evaluate(window), again.kernel().evaluate(window)
    assert a.score == pytest.approx(b.score, rel=1e-5)
    assert a.feature_scores == pytest.approx(b.feature_scores, rel=1e-5)
    with pytest.raises(ValueError, match="format"):
        DriftReference.from_dict({**reference.to_dict(), "format": 99})


def test_no_alarm_on_held_out_drift_free_traffic(
    reference: DriftReference, fresh: np.ndarray
) -> None:
    monitor = DriftMonitor(reference, every=8)
    assert first_alarm(monitor, fresh) is None
    assert monitor.last.ready
    assert monitor.fill == 1.0
    # Independent drift-free windows: the rate stays near the design rate, far below 1.
    rng = np.random.default_rng(9)
    feats = reference.standardise(image_features(fresh))
    evaluator = reference.kernel()
    alarms = [
        evaluator.evaluate(feats[rng.choice(len(feats), WINDOW, replace=False)]).score > 1
        for _ in range(200)
    ]
    assert np.mean(alarms) <= 0.02


@pytest.mark.parametrize(
    ("knobs", "moved"),
    [
        (DriftKnobs(brightness=0.05), {"brightness", "mean_r", "mean_g", "mean_b"}),
        (DriftKnobs(brightness=0.15), {"brightness", "mean_r", "mean_g", "mean_b"}),
        (DriftKnobs(contrast=0.6), {"contrast", "saturation", "sharpness", "noise"}),
        (DriftKnobs(noise=0.05), {"noise", "sharpness", "saturation"}),
    ],
)
def test_alarm_on_shifted_traffic(
    reference: DriftReference, fresh: np.ndarray, knobs: DriftKnobs, moved: set[str]
) -> None:
    monitor = DriftMonitor(reference, every=8)
    assert first_alarm(monitor, fresh[:WINDOW]) is None  # a full, drift-free window first
    rng = np.random.default_rng(11)
    shifted = np.stack([apply_knobs(im, knobs, rng) for im in fresh[WINDOW:]])
    delay = first_alarm(monitor, shifted)
    assert delay is not None, f"{knobs}: not detected"
    assert delay <= 100, f"{knobs}: detected after {delay} requests"
    top = max(monitor.last.feature_scores, key=lambda k: monitor.last.feature_scores[k])
    assert top in moved, monitor.last.feature_scores


def test_monitor_is_quiet_until_the_window_is_full(reference: DriftReference) -> None:
    monitor = DriftMonitor(reference, every=4)
    bright = np.clip(scenes(WINDOW + 1, seed=2) + 0.3, 0, 1)
    results = [monitor.add_images(image) for image in bright[: WINDOW - 4]]
    assert all(r is None for r in results)
    assert monitor.fill == pytest.approx((WINDOW - 4) / WINDOW)
    empty = monitor.score()
    assert empty.ready is False
    assert empty.score == 0.0
    results = [monitor.add_images(image) for image in bright[WINDOW - 4 : WINDOW]]
    assert results[:3] == [None, None, None]  # queued until `every` images are there
    last = results[3]
    assert last is not None
    assert last.ready
    assert last.score > 1.0
    assert monitor.last is last
    assert monitor.add_images(bright[WINDOW]) is None  # the next test waits for 4 more


def test_monitor_counts_images_from_concurrent_requests(reference: DriftReference) -> None:
    monitor = DriftMonitor(reference, every=5)
    images = scenes(40, seed=3)
    threads = [
        threading.Thread(target=lambda k=k: [monitor.add_images(im) for im in images[k::4]])
        for k in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert monitor.count == 40
    monitor.score()
    assert monitor.count == 40
    assert monitor.fill == pytest.approx(40 / WINDOW)


def test_fit_from_a_data_folder_and_a_new_window(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "data", n_train=120, n_test=4, image_size=24, seed=3)
    profile = fit_reference(root, window=32, trials=1000)
    assert profile.image_size == 24
    assert profile.calibration["n_reference"] + profile.calibration["n_held_out"] == 120
    wider = profile.with_window(48)
    assert wider.window == 48
    assert wider.scale != profile.scale
    with pytest.raises(ValueError, match="at least"):
        fit_reference(root, window=64)
    with pytest.raises(ValueError, match="no images"):
        fit_reference(tmp_path)
