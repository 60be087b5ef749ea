"""`ganops train`: the parser and entry point. The body is in `model.cli.train_run` (torch)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from model.cli.args import Parser, UsageError, fail, positive
from model.config import MODEL_NAMES, PRESETS

# --- train --------------------------------------------------------------------------------


def _train_parser() -> Parser:
    p = Parser(prog="ganops train", description="Train the style-transfer GAN.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("data", nargs="?", type=Path, help="CycleGAN-layout folder (trainA/...)")
    src.add_argument("--synthetic", action="store_true", help="generate the synthetic data set")
    p.add_argument("--model", choices=MODEL_NAMES, default="cut")
    p.add_argument("--preset", choices=(*PRESETS, "auto"), default="auto",
                   help="network sizes; auto: full on a GPU, tiny on CPU")  # fmt: skip
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive(int))
    length.add_argument("--steps", type=positive(int))
    p.add_argument("--lr", type=positive(float))
    p.add_argument("--batch-size", type=positive(int))
    p.add_argument("--image-size", type=positive(int))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint")
    p.add_argument("--out", type=Path, default=Path(".ganops/train"), help="output folder")
    p.add_argument("--checkpoint-every", type=positive(int))
    p.add_argument("--no-amp", action="store_true", help="train in fp32 even where bf16 is fast")
    p.add_argument("--threads", type=positive(int), help="CPU threads (default: all cores)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, or none)")
    p.add_argument("--experiment", default="ganops")
    p.add_argument("--register", metavar="NAME", help="register the model under NAME")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def train_main(argv: Sequence[str] | None = None) -> int:
    """`ganops train`: see `ganops train --help`."""
    from model.cli.train_run import run_train  # late: torch loads only for real commands

    env = dict(os.environ)
    try:
        args = _train_parser().parse_args(argv)
        return run_train(args, env)
    except UsageError as exc:
        return fail("train", str(exc))
