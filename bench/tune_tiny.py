"""Pick the tiny preset's learning rate on the validation split, never on the test scenes.

For each model, trains the tiny preset at the preset's lr and at half and twice it, for the
same CPU budget as `bench/learning.py`, at each training seed, and scores each on the
validation split (data seed 1, 256 held-out scenes: see `bench/learning.py`). The pick is the
best mean SSIM to the ground truth, but the preset's value stays unless the pick beats it by
more than the spread between seeds at the preset's lr (a gain inside one seed's noise is not
evidence). `bench/learning.py --split test` then reports the preset on scenes this never saw.

Prints one JSON object. Usage: bench/tune_tiny.py [--seconds 90] [--model cut|cyclegan|both]
[--seeds 0,1]   (about 5 minutes a model and seed)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning import make_data, run, seed_list  # a sibling script, not a package

from ganops.model.config import train_config

FACTORS = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class Tried:
    lr: float
    ssims: list[float]  # one per training seed

    @property
    def mean(self) -> float:
        return sum(self.ssims) / len(self.ssims)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--model", choices=("cut", "cyclegan", "both"), default="both")
    parser.add_argument("--seeds", type=seed_list, default=[0, 1], help="training seeds")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    models = ("cut", "cyclegan") if args.model == "both" else (args.model,)
    seeds: list[int] = args.seeds
    picks: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="ganops-tune-") as tmp:
        root = Path(tmp)
        make_data(root)
        for model in models:
            preset_lr = train_config(model=model, preset_name="tiny").lr
            tried: list[Tried] = []
            for factor in FACTORS:
                lr = preset_lr * factor
                ssims = [
                    float(str(run(model, args.seconds, 1, root, torch.device("cpu"), seed,
                                  split="validation", lr=lr)["ssim_end"]))
                    for seed in seeds
                ]  # fmt: skip
                tried.append(Tried(lr, ssims))
            at_preset = next(t for t in tried if t.lr == preset_lr)
            noise = max(at_preset.ssims) - min(at_preset.ssims)
            best = max(tried, key=lambda t: t.mean)
            gain = best.mean - at_preset.mean
            pick = best.lr if gain > noise else preset_lr
            picks.append({"model": model, "preset_lr": preset_lr,
                          "tried": [{"lr": t.lr, "ssim": t.ssims, "mean": round(t.mean, 4)}
                                    for t in tried],
                          "best_lr": best.lr, "gain_over_preset": round(gain, 4),
                          "seed_spread_at_preset": round(noise, 4), "pick_lr": pick,
                          "preset_is_pick": pick == preset_lr})  # fmt: skip
    print(json.dumps({"benchmark": "tune_tiny", "split": "validation", "budget_s": args.seconds,
                      "seeds": seeds, "picks": picks}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
