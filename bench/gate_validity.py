"""Does the deploy score rank a trained generator above damaged copies of itself, without
ground truth?

The gate scores unpaired data, where no SSIM term exists: only KID on our own encoder, the
colour histogram and the collapse guard. This trains a tiny CUT generator on the synthetic
set, then, in seeded trials (each with its own evaluation inputs, its own encoder and its own
damage), compares the trained generator's deploy score (ground truth removed) with that of:
- `noise`: its weights with Gaussian noise (0.5 of each tensor's spread);
- `colour`: its outputs with a colour cast (+0.25 R, -0.15 B);
- `collapse`: a constant output (the mean of its outputs);
- `identity`: the input returned unchanged.

Prints one JSON object. Goal: the trained generator ranks first in >= 95% of trials, for each
kind of damage. Usage: bench/gate_validity.py [--trials 20] [--steps 400]   (a few minutes)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganops.model.bundle import load_bundle
from ganops.model.config import EvalConfig, train_config
from ganops.model.data import make_synthetic
from ganops.model.evaluate import EvalData, load_eval_data, output_metrics, translate
from ganops.model.tracking import NullTracker
from ganops.model.train import train

GOAL = 0.95
Damage = Callable[[nn.Module, torch.Tensor, int], torch.Tensor]


def _noisy_weights(gen: nn.Module, inputs: torch.Tensor, seed: int) -> torch.Tensor:
    damaged = copy.deepcopy(gen)
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in damaged.parameters():
            scale = 0.5 * float(param.std()) if param.numel() > 1 else 0.0
            param.add_(torch.randn(param.shape, generator=rng) * scale)
    return translate(damaged, inputs, "cpu", 64)


def _colour_cast(gen: nn.Module, inputs: torch.Tensor, _seed: int) -> torch.Tensor:
    shift = torch.tensor([0.25, 0.0, -0.15]).view(1, 3, 1, 1)
    return (translate(gen, inputs, "cpu", 64) + shift).clamp(-1.0, 1.0)


def _collapse(gen: nn.Module, inputs: torch.Tensor, _seed: int) -> torch.Tensor:
    outputs = translate(gen, inputs, "cpu", 64)
    return outputs.mean(dim=0, keepdim=True).expand_as(outputs).clone()


def _identity(_gen: nn.Module, inputs: torch.Tensor, _seed: int) -> torch.Tensor:
    return inputs.clone()


DAMAGES: dict[str, Damage] = {
    "noise": _noisy_weights,
    "colour": _colour_cast,
    "collapse": _collapse,
    "identity": _identity,
}


def _score(outputs: torch.Tensor, data: EvalData) -> float:
    return output_metrics(outputs, data)["deploy_score"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--num-images", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic(Path(tmp) / "data", n_train=200, n_test=256, image_size=32)
        cfg = dataclasses.replace(
            train_config(model="cut", preset_name="tiny", steps=args.steps), amp=False
        )
        start = time.perf_counter()
        result = train(cfg, root, torch.device("cpu"), NullTracker(), Path(tmp) / "out")
        train_s = time.perf_counter() - start
        trained = load_bundle(result.bundle_dir, torch.device("cpu")).generator
        wins = {name: 0 for name in DAMAGES}
        margins: dict[str, list[float]] = {name: [] for name in DAMAGES}
        for trial in range(args.trials):
            ecfg = EvalConfig(seed=1000 + trial, num_images=args.num_images)
            # No ground truth: the unpaired case the gate must handle.
            data = dataclasses.replace(load_eval_data(root, ecfg, 32), gt=None)
            mine = _score(translate(trained, data.a, "cpu", 64), data)
            for name, damage in DAMAGES.items():
                theirs = _score(damage(trained, data.a, trial), data)
                wins[name] += int(mine > theirs)
                margins[name].append(mine - theirs)
    rates = {name: wins[name] / args.trials for name in DAMAGES}
    print(json.dumps({
        "bench": "gate_validity",
        "trials": args.trials,
        "train_steps": args.steps,
        "train_seconds": round(train_s, 1),
        "eval_images": args.num_images,
        "rank_first_rate": rates,
        "median_margin": {k: round(sorted(v)[len(v) // 2], 4) for k, v in margins.items()},
        "goal": GOAL,
        "met": all(rate >= GOAL for rate in rates.values()),
        "torch": torch.__version__,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
