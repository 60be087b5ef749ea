"""Does the tiny preset learn the synthetic style on the CPU in 90 s?

Trains CUT (the default model) and CycleGAN, tiny preset with its tuned defaults, on the
synthetic training scenes and reports SSIM to the ground-truth translation (model.evaluate,
fixed inputs) before and after, for each, at two training seeds.

The scenes it reports on are its own: `--split test` (the default) draws 256 held-out scenes
from data seed 2, which no tuning has seen; `--split validation` draws them from data seed 1,
the split `bench/tune_tiny.py` picks the preset's values on. Both are independent of the
training scenes (data seed 0), and of the `testA` scenes that sit beside them.
The step count is sized to the time budget from a short calibration run, so that the learning
rate schedule completes; a guard stops training if the machine turns out slower.

Prints one JSON object. Goals: SSIM >= 0.6 (CUT) and >= 0.7 (CycleGAN) after 90 s of CPU
training, at every seed.
Usage: bench/learning.py [--seconds 90] [--model cut|cyclegan|both] [--seeds 0,1]
       [--split test|validation] [--lr X]   (about 4 minutes a seed)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganops.model.batches import Batches, load_domain
from ganops.model.cli.train_run import SYNTHETIC_TRAIN
from ganops.model.config import EvalConfig, TrainConfig, train_config
from ganops.model.data import make_synthetic
from ganops.model.evaluate import evaluate, load_eval_data
from ganops.model.tracking import NullTracker
from ganops.model.train import ProgressEvent, TrainSession, step_options
from ganops.model.trainers import make_trainer

# SSIM to the ground truth after the budget (issue: CUT >= 0.6, CycleGAN >= 0.7).
GOALS = {"cut": 0.6, "fastcut": 0.6, "cyclegan": 0.7}


# Data seeds: the training scenes, the validation split tuning reads, the test split reported.
DATA_SEEDS = {"train": 0, "validation": 1, "test": 2}
HELD_OUT = 256

# The loop runs a few percent slower than the calibration (the weight average, batches,
# progress): plan for this share of the budget, so that the lr schedule completes in it.
MARGIN = 0.9


class OutOfTime(Exception):
    pass


def steps_per_second(cfg: TrainConfig, data: Path, device: torch.device, seconds: float) -> float:
    """Time the real step on real batches for `seconds` (after a warm-up)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    size = cfg.net.image_size
    batches = Batches(load_domain(data / "trainA", size), load_domain(data / "trainB", size),
                       cfg, rank=0, world=1)  # fmt: skip
    trainer = make_trainer(cfg, step_options(cfg, device))
    for step in range(5):
        trainer.train_step(*batches.get(step)[1:])
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        trainer.train_step(*batches.get(done)[1:])
        done += 1
    return done / (time.perf_counter() - start)


def run(
    model: str,
    seconds: float,
    threads: int | None,
    root: Path,
    device: torch.device,
    seed: int,
    *,
    split: str = "test",
    lr: float | None = None,
) -> dict[str, object]:
    """Train on `root/data`, report on the held-out scenes in `root/<split>`."""
    data = root / "data"
    base = train_config(model=model, preset_name="tiny", threads=threads, seed=seed, lr=lr)
    rate = steps_per_second(base, data, device, seconds=min(8.0, seconds / 10))
    cfg = dataclasses.replace(base, steps=max(1, int(rate * seconds * MARGIN)),
                              log_every=10, checkpoint_every=10**9)  # fmt: skip
    ecfg = EvalConfig()
    eval_data = load_eval_data(root / split, ecfg, cfg.net.image_size)
    session = TrainSession(cfg, data, device, NullTracker(), root / model)
    before = evaluate(session.trainer.generator, eval_data, ecfg, device)
    done = [0]

    def guard(event: ProgressEvent) -> None:
        done[0] = event.step
        if event.elapsed_s > seconds:
            raise OutOfTime

    session.progress = guard
    started = time.perf_counter()
    try:
        session.run(resume=False)
    except OutOfTime:  # cut short: finish as the run would have (model/norm_stats.py)
        session.measure_norm_stats(done[0])
    elapsed = time.perf_counter() - started
    after = evaluate(session.trainer.generator, eval_data, ecfg, device)
    after.grid.save(root / f"{model}-{seed}-grid.png")
    return {
        "model": model,
        "seed": seed,
        "split": split,
        "train_seconds": round(elapsed, 1),
        "steps": done[0],
        "planned_steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "ssim_start": round(before.metrics["ssim"], 4),
        "ssim_end": round(after.metrics["ssim"], 4),
        "ssim_identity": round(eval_data.reference["ssim_identity"], 4),
        "deploy_score_start": round(before.deploy_score, 4),
        "deploy_score_end": round(after.deploy_score, 4),
        "goal_ssim": GOALS[model],
        "goal_met": after.metrics["ssim"] >= GOALS[model],
    }


def seed_list(text: str) -> list[int]:
    """`--seeds 0,1`: whole numbers, comma-separated (an argparse type: a bad one is a usage
    line, not a traceback)."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: seeds are whole numbers, e.g. 0,1") from None
    return seeds


def make_data(root: Path) -> None:
    """The training scenes and both held-out splits under `root` (see DATA_SEEDS)."""
    make_synthetic(root / "data", n_train=SYNTHETIC_TRAIN, n_test=0, seed=DATA_SEEDS["train"])
    for split in ("validation", "test"):
        make_synthetic(root / split, n_train=0, n_test=HELD_OUT, seed=DATA_SEEDS[split])
        for folder in ("trainA", "trainB"):  # the deploy score's encoder learns from these
            (root / split / folder).rmdir()
            (root / split / folder).symlink_to(root / "data" / folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--model", choices=("cut", "cyclegan", "both"), default="both")
    parser.add_argument("--seeds", type=seed_list, default=[0, 1],
                        help="training seeds (init, data order)")  # fmt: skip
    parser.add_argument("--split", choices=("test", "validation"), default="test")
    parser.add_argument("--lr", type=float, default=None, help="instead of the preset's")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (0: torch's default; 1 is robust on busy machines)")  # fmt: skip
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    models = ("cut", "cyclegan") if args.model == "both" else (args.model,)
    seeds: list[int] = args.seeds
    with tempfile.TemporaryDirectory(prefix="ganops-learning-") as tmp:
        root = Path(tmp)
        make_data(root)
        threads = args.threads or None
        results = [
            run(model, args.seconds, threads, root, device, seed, split=args.split, lr=args.lr)
            for model in models
            for seed in seeds
        ]
    report = {
        "benchmark": "learning",
        "preset": "tiny",
        "device": "cpu",
        "threads": args.threads or torch.get_num_threads(),
        "budget_s": args.seconds,
        "split": args.split,
        "data_seeds": DATA_SEEDS,
        "seeds": seeds,
        "results": results,
        "goal_met": all(bool(r["goal_met"]) for r in results),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
