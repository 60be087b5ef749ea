"""`ganops train`: the parser and entry point. The body is in `model.cli.train_run` (torch)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ganops.model.cli.args import Parser, UsageError, fail, positive
from ganops.model.config import (
    MODEL_NAMES,
    PRESET_MODEL_TRAIN_DEFAULTS,
    PRESETS,
    TRAIN_PRESETS,
    TrainConfig,
)

# --- train --------------------------------------------------------------------------------


def _by_preset(key: str) -> str:
    """`tiny 0.0005 (cyclegan 0.0015), full 0.0002`: a training default as each preset sets
    it, with the models that differ."""
    parts = []
    for name in TRAIN_PRESETS:
        models = [f"{m} {v[key]}" for (n, m), v in PRESET_MODEL_TRAIN_DEFAULTS.items()
                  if n == name and key in v]  # fmt: skip
        parts.append(
            f"{name} {TRAIN_PRESETS[name][key]}" + (f" ({', '.join(models)})" if models else "")
        )
    return ", ".join(parts)


def _train_parser() -> Parser:
    sizes = ", ".join(f"{name} {net.image_size}" for name, net in PRESETS.items())
    d = TrainConfig()
    p = Parser(prog="ganops train", description="Train the style-transfer GAN.")
    add = p.add_argument
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("data", nargs="?", type=Path, help="CycleGAN-layout folder (trainA/...)")
    src.add_argument("--synthetic", action="store_true", help="generate the synthetic data set")
    add("--model", choices=MODEL_NAMES, default="cut", help="architecture (default: %(default)s)")
    add(
        "--preset",
        choices=(*PRESETS, "auto"),
        default="auto",
        help="network sizes; auto: full on a GPU, tiny on CPU (default: %(default)s)",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--epochs",
        type=positive(int),
        help=f"passes over the data, > 0 (default: the preset's: {_by_preset('epochs')})",
    )
    length.add_argument(
        "--steps",
        type=positive(int),
        help="optimiser steps, > 0; instead of --epochs (default: by epochs)",
    )
    add(
        "--lr",
        type=positive(float),
        help=f"learning rate, > 0 (default: the preset's: {_by_preset('lr')})",
    )
    add(
        "--batch-size",
        type=positive(int),
        help=f"images per step, > 0 (default: the preset's: {_by_preset('batch_size')}; "
        "full on a GPU: the batch that fills it)",
    )
    add(
        "--image-size",
        type=positive(int),
        help=f"training resolution in px, > 0, a multiple of 4 (default: the preset's: {sizes})",
    )
    add("--seed", type=int, default=d.seed, help="random seed, any integer (default: %(default)s)")
    add("--resume", action="store_true", help="continue from OUT's checkpoint")
    add(
        "--out",
        type=Path,
        default=Path(".ganops/train"),
        help="output folder (default: %(default)s)",
    )
    add(
        "--checkpoint-every",
        type=positive(int),
        help=f"steps between checkpoints, > 0 (default: {d.checkpoint_every})",
    )
    add("--no-amp", action="store_true", help="train in fp32 even where bf16 is fast")
    add("--threads", type=positive(int), help="CPU threads, > 0 (default: all cores)")
    add(
        "--device-data-gb",
        type=float,
        metavar="GB",
        help="above this many GB of decoded images, stream them from a cache on disk instead "
        "of holding them on the device (default: $GANOPS_DEVICE_DATA_GB or 8)",
    )
    add("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, or none)")
    add("--experiment", default="ganops", help="MLflow experiment name (default: %(default)s)")
    add(
        "--register",
        metavar="NAME",
        help="register the model under NAME (default: no registration)",
    )
    add("--no-eval", action="store_true", help="skip the evaluation after training")
    add("--quiet", action="store_true", help="no progress lines")
    add(
        "--json",
        action="store_true",
        help="print the results as one JSON document on stdout; progress goes to stderr",
    )
    return p  # fmt: skip


def train_main(argv: Sequence[str] | None = None) -> int:
    """`ganops train`: see `ganops train --help`."""
    from ganops.model.cli.train_run import run_train  # late: torch loads only for real commands

    env = dict(os.environ)
    try:
        args = _train_parser().parse_args(argv)
        return run_train(args, env)
    except UsageError as exc:
        return fail("train", str(exc))
