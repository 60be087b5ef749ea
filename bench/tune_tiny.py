"""Pick the tiny preset's learning rate on the validation split, never on the test scenes.

For each model, trains the tiny preset at the preset's lr and at half and twice it, for the
same CPU budget as `bench/learning.py`, and scores each on the validation split (data seed 1,
256 held-out scenes: see `bench/learning.py`). The best by SSIM to the ground truth is the
pick; `preset_is_pick` says whether `model/config.py`'s value is it. `bench/learning.py
--split test` then reports the preset on scenes this never saw.

Prints one JSON object. Usage: bench/tune_tiny.py [--seconds 90] [--model cut|cyclegan|both]
[--seed 0]   (about 5 minutes a model)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning import make_data, run  # a sibling script, not a package

from ganops.model.config import train_config

FACTORS = (0.5, 1.0, 2.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--model", choices=("cut", "cyclegan", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    models = ("cut", "cyclegan") if args.model == "both" else (args.model,)
    picks = []
    with tempfile.TemporaryDirectory(prefix="ganops-tune-") as tmp:
        root = Path(tmp)
        make_data(root)
        for model in models:
            preset_lr = train_config(model=model, preset_name="tiny").lr
            tried = []
            for factor in FACTORS:
                result = run(model, args.seconds, 1, root, torch.device("cpu"), args.seed,
                             split="validation", lr=preset_lr * factor)  # fmt: skip
                tried.append({"lr": preset_lr * factor, "ssim": result["ssim_end"],
                              "deploy_score": result["deploy_score_end"],
                              "steps": result["steps"]})  # fmt: skip
            best = max(tried, key=lambda t: float(t["ssim"]))  # type: ignore[arg-type]
            picks.append({"model": model, "preset_lr": preset_lr, "tried": tried,
                          "pick_lr": best["lr"], "preset_is_pick": best["lr"] == preset_lr})  # fmt: skip
    print(json.dumps({"benchmark": "tune_tiny", "split": "validation", "budget_s": args.seconds,
                      "seed": args.seed, "picks": picks}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
