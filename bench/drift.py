"""Drift detector benchmark: detection delay, false alarms, and cost per request. Prints JSON.

- detection delay: a monitor holding a full window of drift-free requests, then shifted
  requests one at a time (the server's every-16-images evaluation); requests until score > 1;
- false alarms: independent drift-free windows (the calibrated quantity, per window); >= 200
  drift-free streams (any alarm during a stream, and a sustained alarm: 4 evaluations in a
  row, as an alert `for:` would need); and the spread of the per-window rate over references
  fitted on different training sets;
- cost: features per image (computed in batches of 16, as the monitor does) plus the
  amortised window test, against the generator's forward pass on one image at the tiny
  (32 px) and full (256 px) presets.

Goals: +0.05 brightness detected within 100 requests; false alarms <= 1%; drift cost < 5% of
inference. Run: `.venv/bin/python bench/drift.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ganops.model.config import preset
from ganops.model.data import DriftKnobs, apply_knobs
from ganops.model.drift import DriftReference, fit_reference
from ganops.model.features import image_features
from ganops.model.networks import build_generator
from ganops.model.serving.drift_monitor import DriftMonitor
from ganops.model.synthetic import random_scene, render

WINDOW = 64
EVERY = 16
SHIFTS = {
    "brightness+0.05": DriftKnobs(brightness=0.05),
    "brightness+0.15": DriftKnobs(brightness=0.15),
    "contrast x0.7": DriftKnobs(contrast=0.7),
    "contrast x1.3": DriftKnobs(contrast=1.3),
    "noise 0.03": DriftKnobs(noise=0.03),
}


def scenes(n: int, seed: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([render(random_scene(rng), "A", size) for _ in range(n)])


def detection_delays(
    ref: DriftReference, clean: np.ndarray, images: np.ndarray, repeats: int, horizon: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, knobs in SHIFTS.items():
        delays = []
        for rep in range(repeats):
            rng = np.random.default_rng(rep)
            picks = rng.choice(len(images), horizon, replace=False)
            shifted = image_features(np.stack([apply_knobs(images[i], knobs, rng) for i in picks]))
            monitor = DriftMonitor(ref, every=EVERY)
            monitor.add(clean[rng.choice(len(clean), WINDOW, replace=False)])
            delays.append(_first_alarm(monitor, shifted))
        found = [d for d in delays if d is not None]
        out[name] = {
            "detected": f"{len(found)}/{repeats} within {horizon} requests",
            "median": float(np.median(found)) if found else None,
            "p90": float(np.quantile(found, 0.9)) if found else None,
            "max": max(found) if found else None,
        }
    return out


def _first_alarm(monitor: DriftMonitor, features: np.ndarray) -> int | None:
    for i, row in enumerate(features, start=1):
        score = monitor.add(row)
        if score is not None and score.score > 1.0:
            return i
    return None


def false_alarms(
    ref: DriftReference, clean: np.ndarray, windows: int, streams: int, length: int
) -> dict[str, Any]:
    rng = np.random.default_rng(123)
    evaluator, z = ref.kernel(), ref.standardise(clean)
    per_window = np.mean(
        [
            evaluator.evaluate(z[rng.choice(len(z), WINDOW, replace=False)]).score > 1.0
            for _ in range(windows)
        ]
    )
    any_alarm = sustained = evaluations = 0
    for _ in range(streams):
        monitor = DriftMonitor(ref, every=EVERY)
        run = longest = 0
        for row in clean[rng.choice(len(clean), length, replace=False)]:
            score = monitor.add(row)
            if score is None:
                continue
            evaluations += 1
            run = run + 1 if score.score > 1.0 else 0
            longest = max(longest, run)
        any_alarm += longest > 0
        sustained += longest >= 4
    return {
        "per_window": {"rate": float(per_window), "windows": windows},
        "streams": {
            "count": streams,
            "requests_each": length,
            "evaluations_each": evaluations // streams,
            "any_alarm_rate": any_alarm / streams,
            "sustained_alarm_rate": sustained / streams,
        },
    }


def reference_spread(
    train_pool: np.ndarray, clean: np.ndarray, references: int, windows: int
) -> dict[str, Any]:
    """The per-window rate of references fitted on disjoint 200-image training sets."""
    rates = []
    for k in range(references):
        ref = fit_reference(train_pool[k * 200 : (k + 1) * 200], window=WINDOW, seed=k)
        rng, evaluator, z = np.random.default_rng(k), ref.kernel(), ref.standardise(clean)
        hits = [
            evaluator.evaluate(z[rng.choice(len(z), WINDOW, replace=False)]).score > 1.0
            for _ in range(windows)
        ]
        rates.append(float(np.mean(hits)))
    return {
        "references": references,
        "windows_each": windows,
        "mean": float(np.mean(rates)),
        "median": float(np.median(rates)),
        "max": max(rates),
        "above_1pct": sum(r > 0.01 for r in rates),
    }


def _per_call(fn: Callable[[], object], n: int) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


def cost(ref: DriftReference, clean: np.ndarray, full: bool) -> dict[str, Any]:
    monitor = DriftMonitor(ref, every=EVERY)
    monitor.add(clean[:WINDOW])
    test_s = _per_call(monitor.score, 200)
    out: dict[str, Any] = {"window_test_s": test_s, "every": EVERY}
    sizes = [("tiny", 32)] + ([("full", 256)] if full else [])
    for name, size in sizes:
        features_s, forward_s = _feature_and_forward_s(name, size)
        drift_s = features_s + test_s / EVERY
        out[f"{name}_{size}px"] = {
            "features_s": features_s,
            "drift_per_request_s": drift_s,
            "forward_s": forward_s,
            "drift_share_of_inference": drift_s / forward_s,
        }
    return out


def _feature_and_forward_s(name: str, size: int) -> tuple[float, float]:
    """Features per image, computed as the monitor does (in batches of EVERY), and the
    generator's forward pass on one image."""
    images = scenes(EVERY, seed=5, size=size)
    generator = build_generator(preset(name)).eval()
    x = torch.rand(1, 3, size, size)
    features_s = _per_call(lambda: image_features(images), 50 if size < 100 else 5) / EVERY
    with torch.inference_mode():
        forward_s = _per_call(lambda: generator(x), 50 if size < 100 else 3)
    return features_s, forward_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = parser.parse_args(argv)
    q = args.quick
    torch.manual_seed(0)
    train = scenes(200 * (2 if q else 10), seed=0)
    clean_images = scenes(600 if q else 3000, seed=1)
    clean = image_features(clean_images)
    started = time.perf_counter()
    ref = fit_reference(train[:200], window=WINDOW, seed=0)
    fit_s = time.perf_counter() - started
    delays = detection_delays(ref, clean, clean_images, repeats=5 if q else 30, horizon=300)
    alarms = false_alarms(ref, clean, 500 if q else 4000, 200, 256)
    costs = cost(ref, clean, full=not q)
    result: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
        },
        "window": WINDOW,
        "evaluate_every": EVERY,
        "reference": {"fit_seconds_200_images": fit_s, "calibration": ref.calibration},
        "detection_delay_requests": delays,
        "false_alarms": alarms,
        "false_alarms_over_references": reference_spread(
            train, clean, references=2 if q else 10, windows=300 if q else 1000
        ),
        "cost": costs,
    }
    b05 = delays["brightness+0.05"]["max"]
    result["goals"] = {
        "brightness+0.05_within_100": b05 is not None and b05 <= 100,
        "false_alarms_per_window_le_1pct": alarms["per_window"]["rate"] <= 0.01,
        "drift_cost_lt_5pct": all(
            v["drift_share_of_inference"] < 0.05 for v in costs.values() if isinstance(v, dict)
        ),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
