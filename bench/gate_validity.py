"""Does the gate refuse a slightly worse model and pass an equal or better one?

The gate (`model.gate.compare`, as the pipeline's evaluate step calls it) passes a challenger
when the lower bound of its paired-bootstrap deploy-score gain over the rival is above
`gate_margin`. This trains one tiny CUT generator on the synthetic set (the reference), then
pairs it with copies whose true order is known:

- worse, by a small amount: `fewer_steps` (the same run's weight average at half its steps,
  with its own batch-norm statistics), `blur` (its outputs through a [1, 2, 1] binomial blur),
  `colour` (its outputs shifted by 5% of the range: +0.1 red, -0.1 blue on [-1, 1]);
- equal: `near` (the same run's weight average at 95% of its steps, where the lr is nearly
  zero) and `same` (the reference itself, as an identical retrain would be).

Each gap is measured on the whole test pool (`true_gap`: deploy score of the copy minus the
reference's). Each trial draws its own evaluation inputs from the pool (the production count,
`EvalConfig.num_images`) and runs `compare` both ways: a worse copy as challenger should be
refused (else a false pass), the reference against it should pass, and so should an equal copy
either way (else a false refusal). The deploy score runs without ground truth: the unpaired
case every real data set is. The encoder is the production one (fixed seed), as in the
pipeline. Reported for a range of margins, since `passed` only compares the bound with it.

Prints one JSON object. Usage: bench/gate_validity.py [--trials 50] [--steps 400]
(about 5 minutes on 2 idle cores: training is most of it).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganops.model import norm_stats
from ganops.model.bundle import unwrap
from ganops.model.config import EvalConfig, train_config
from ganops.model.data import make_synthetic
from ganops.model.evaluate import EvalData, load_eval_data, output_metrics, translate
from ganops.model.gate import compare
from ganops.model.metrics import encode, histogram_distance, kid, mean_pairwise_distance
from ganops.model.tracking import NullTracker
from ganops.model.train import ProgressEvent, TrainSession

WORSE = ("fewer_steps", "blur", "colour")
EQUAL = ("near", "same")
MARGINS = (-0.05, -0.03, -0.02, -0.015, -0.01, -0.005, 0.0, 0.005)
SNAPSHOTS = {"fewer_steps": 0.5, "near": 0.95}  # fraction of the run's steps


def _blur(images: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(3, 1, 3, 3)
    padded = nn.functional.pad(images, (1, 1, 1, 1), mode="reflect")
    return nn.functional.conv2d(padded, kernel, groups=3)


def _colour(images: torch.Tensor) -> torch.Tensor:
    shift = torch.tensor([0.1, 0.0, -0.1]).view(1, 3, 1, 1)  # 5% of the [-1, 1] range
    return (images + shift).clamp(-1.0, 1.0)


def _train(root: Path, out: Path, steps: int) -> tuple[nn.Module, dict[str, nn.Module], float]:
    """The shipped generator and the weight averages at SNAPSHOTS, each with its batch-norm
    statistics measured as the run measures the final one."""
    cfg = dataclasses.replace(
        train_config(model="cut", preset_name="tiny", steps=steps, threads=1),
        amp=False,
        log_every=1,
    )
    session = TrainSession(cfg, root, torch.device("cpu"), NullTracker(), out)
    at = {round(f * steps): name for name, f in SNAPSHOTS.items()}
    snapshots: dict[str, nn.Module] = {}

    def progress(event: ProgressEvent) -> None:
        if event.step in at:
            snap = copy.deepcopy(unwrap(session.trainer.generator))
            first = max(0, event.step - norm_stats.BATCHES)
            batches = (session.batches.get(s)[1:] for s in range(first, event.step))
            trainer = session.trainer
            norm_stats.measure(snap, (x for a, b in batches for x in trainer.norm_inputs(a, b)))
            snapshots[at[event.step]] = snap.eval()

    session.progress = progress
    start = time.perf_counter()
    result = session.run(resume=False)
    final = copy.deepcopy(unwrap(session.trainer.generator)).eval()
    assert result.steps == steps
    return final, snapshots, time.perf_counter() - start


def _eval_data(a: torch.Tensor, b: torch.Tensor, encoder: nn.Module) -> EvalData:
    """What `load_eval_data` builds for inputs `a` and targets `b`, without ground truth."""
    features_b = encode(encoder, b)  # type: ignore[arg-type]
    data = EvalData([str(i) for i in range(len(a))], a, b, None, encoder)  # type: ignore[arg-type]
    data.reference = {
        "kid_identity": kid(encode(encoder, a), features_b),  # type: ignore[arg-type]
        "hist_identity": histogram_distance(a, b),
        "div_target": mean_pairwise_distance(b) / max(mean_pairwise_distance(a), 1e-8),
    }
    return data


def _rates(lowers: dict[str, list[float]], uppers: dict[str, list[float]]) -> dict[str, object]:
    """Per margin: worse copies passed (false passes), equal copies refused either way and the
    reference refused against a worse copy (false refusals)."""
    out: dict[str, object] = {}
    for margin in MARGINS:
        false_pass = {k: sum(lo > margin for lo in lowers[k]) / len(lowers[k]) for k in WORSE}
        # The reverse comparison's lower bound is minus this one's upper bound (same draws).
        better_refused = {k: sum(-up <= margin for up in uppers[k]) / len(uppers[k]) for k in WORSE}
        equal_refused = {
            k: sum((lo <= margin) or (-up <= margin) for lo, up in zip(lowers[k], uppers[k],
                   strict=True)) / len(lowers[k])
            for k in EQUAL
        }  # fmt: skip
        out[str(margin)] = {
            "false_pass": false_pass,
            "false_refusal_equal": equal_refused,
            "false_refusal_better": better_refused,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--pool", type=int, default=512, help="test images the trials draw from")
    args = parser.parse_args(argv)
    # One thread: on a shared machine a second one made the small ops here ~10x slower.
    torch.set_num_threads(1)
    ecfg = EvalConfig()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic(Path(tmp) / "data", n_train=200, n_test=args.pool, image_size=32)
        final, snaps, train_s = _train(root, Path(tmp) / "out", args.steps)
        # The whole pool, with the production encoder (EvalConfig's seed).
        pool = load_eval_data(root, dataclasses.replace(ecfg, num_images=args.pool), 32)
    pool_a, pool_b, encoder = pool.a, pool.b, pool.encoder
    started = time.perf_counter()
    ref_out = translate(final, pool_a, "cpu", 64)
    outputs = {
        "fewer_steps": translate(snaps["fewer_steps"], pool_a, "cpu", 64),
        "near": translate(snaps["near"], pool_a, "cpu", 64),
        "blur": _blur(ref_out),
        "colour": _colour(ref_out),
        "same": ref_out,
    }
    whole = _eval_data(pool_a, pool_b, encoder)
    ref_score = output_metrics(ref_out, whole)["deploy_score"]
    true_gap = {k: output_metrics(v, whole)["deploy_score"] - ref_score for k, v in outputs.items()}
    lowers: dict[str, list[float]] = {k: [] for k in outputs}
    uppers: dict[str, list[float]] = {k: [] for k in outputs}
    n = min(ecfg.num_images, args.pool)
    for trial in range(args.trials):
        rng = torch.Generator().manual_seed(10_000 + trial)
        pick_a, pick_b = (torch.randperm(args.pool, generator=rng)[:n] for _ in range(2))
        data = _eval_data(pool_a[pick_a], pool_b[pick_b], encoder)
        for name, out in outputs.items():
            result = compare(out[pick_a], ref_out[pick_a], data, resamples=ecfg.bootstrap_resamples,
                             confidence=ecfg.gate_confidence, seed=trial)  # fmt: skip
            lowers[name].append(result.lower)
            uppers[name].append(result.upper)
    print(json.dumps({
        "bench": "gate_validity",
        "trials": args.trials,
        "eval_images": n,
        "pool": args.pool,
        "resamples": ecfg.bootstrap_resamples,
        "confidence": ecfg.gate_confidence,
        "train_steps": args.steps,
        "train_seconds": round(train_s, 1),
        "trial_seconds": round((time.perf_counter() - started) / args.trials, 2),
        "reference_deploy_score": round(ref_score, 4),
        "true_gap": {k: round(v, 4) for k, v in true_gap.items()},
        "median_lower": {k: round(sorted(v)[len(v) // 2], 4) for k, v in lowers.items()},
        "by_margin": _rates(lowers, uppers),
        "gate_margin_default": ecfg.gate_margin,
        "torch": torch.__version__,
    }, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
