"""The gate's real job, on models whose true order is known (a short `bench/gate_validity.py`).

One tiny CUT run (200 steps), paired with copies of it: its outputs shifted by 5% of the range
in colour or blurred (worse by design), its weight averages at half and at 95% of the steps
(worse, equal or better: measured), and itself. Each copy's true gap is its deploy score on
the whole pool of 384 held-out inputs. Each of 12 trials draws its own production-sized inputs
(256) from the pool and calls `gate.compare` as the pipeline does, with the default
`gate_margin`: a clearly worse challenger is refused and the model passes against it, a better
one passes, an identical one passes either way. The bench runs 50 trials of a longer run and
reports the rates for a range of margins (docs/recipe.md).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from ganops.model.config import EvalConfig
from ganops.model.data import make_synthetic
from ganops.model.evaluate import load_eval_data, output_metrics, translate
from ganops.model.gate import compare

pytestmark = pytest.mark.slow  # a training run and 60 paired bootstraps

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gate_validity.py"
STEPS, POOL, TRIALS = 200, 384, 12
CLEAR = 0.02  # deploy score lost by a clearly worse copy (the gate's bootstrap sd is ~0.004)
BETTER = 0.005  # ... and gained by a better one


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gate_validity_bench", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_default_margin_refuses_worse_models_and_passes_equal_ones(tmp_path: Path) -> None:
    bench = _bench()
    torch.set_num_threads(1)
    ecfg = EvalConfig()
    root = make_synthetic(tmp_path / "data", n_train=200, n_test=POOL, image_size=32)
    final, snaps, _ = bench._train(root, tmp_path / "out", STEPS)
    pool = load_eval_data(root, dataclasses.replace(ecfg, num_images=POOL), 32)
    ref = translate(final, pool.a, "cpu", 64)
    copies = {
        "fewer_steps": translate(snaps["fewer_steps"], pool.a, "cpu", 64),
        "colour": bench._colour(ref),
        "blur": bench._blur(ref),
        "near": translate(snaps["near"], pool.a, "cpu", 64),
        "same": ref,
    }
    whole = bench._eval_data(pool.a, pool.b, pool.encoder)
    score = output_metrics(ref, whole)["deploy_score"]
    gap = {k: output_metrics(v, whole)["deploy_score"] - score for k, v in copies.items()}
    passed: dict[str, int] = dict.fromkeys(copies, 0)  # the copy, as challenger, passed
    beaten: dict[str, int] = dict.fromkeys(copies, 0)  # the model passed against the copy
    for trial in range(TRIALS):
        rng = torch.Generator().manual_seed(10_000 + trial)
        pick_a, pick_b = (torch.randperm(POOL, generator=rng)[: ecfg.num_images] for _ in "ab")
        data = bench._eval_data(pool.a[pick_a], pool.b[pick_b], pool.encoder)
        for name, out in copies.items():
            result = compare(out[pick_a], ref[pick_a], data, resamples=ecfg.bootstrap_resamples,
                             confidence=ecfg.gate_confidence, margin=ecfg.gate_margin,
                             seed=trial)  # fmt: skip
            passed[name] += result.passed
            # The reverse comparison's lower bound is minus this one's upper bound.
            beaten[name] += -result.upper > ecfg.gate_margin
    # The truth is each copy's gap on the whole pool; a short run's half-way weight average can
    # be as good as its end, so which copies are worse is measured, not assumed.
    worse = [k for k, g in gap.items() if g <= -CLEAR]
    better = [k for k, g in gap.items() if g >= BETTER]
    assert {"colour", "blur"} <= set(worse), gap  # 5% colour shift, a blur: worse by design
    for name in worse:  # never passes, and the model always passes against it
        assert (name, passed[name], beaten[name]) == (name, 0, TRIALS), gap
    for name in better:  # at most one false refusal in the trials
        assert passed[name] >= TRIALS - 1, (name, passed[name], gap)
    assert passed["same"] == beaten["same"] == TRIALS  # an identical retrain is not refused
