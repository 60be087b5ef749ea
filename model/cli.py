"""`ganops train | evaluate | stylize | validate`: thin argparse adapters over `model/`.

Each `*_main(argv)` parses, reads the environment (here and nowhere below), builds frozen
configs, picks the device once and calls the library. Bad arguments and bad data end with
one line on stderr and exit code 2; only the error types we expect are caught.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from model.config import MODEL_NAMES, PRESETS, EvalConfig

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad arguments or bad data: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors become a `UsageError` instead of usage text and `sys.exit`."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def _positive(kind: type[int] | type[float]):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def fail(command: str, message: str) -> int:
    print(f"ganops {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def tracking_uri_from(flag: str | None, env: Mapping[str, str]) -> str | None:
    return flag or env.get("MLFLOW_TRACKING_URI") or None


# --- train --------------------------------------------------------------------------------


def _train_parser() -> _Parser:
    p = _Parser(prog="ganops train", description="Train the style-transfer GAN.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("data", nargs="?", type=Path, help="CycleGAN-layout folder (trainA/...)")
    src.add_argument("--synthetic", action="store_true", help="generate the synthetic data set")
    p.add_argument("--model", choices=MODEL_NAMES, default="cut")
    p.add_argument("--preset", choices=(*PRESETS, "auto"), default="auto",
                   help="network sizes; auto: full on a GPU, tiny on CPU")  # fmt: skip
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=_positive(int))
    length.add_argument("--steps", type=_positive(int))
    p.add_argument("--lr", type=_positive(float))
    p.add_argument("--batch-size", type=_positive(int))
    p.add_argument("--image-size", type=_positive(int))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint")
    p.add_argument("--out", type=Path, default=Path(".ganops/train"), help="output folder")
    p.add_argument("--checkpoint-every", type=_positive(int))
    p.add_argument("--no-amp", action="store_true", help="train in fp32 even where bf16 is fast")
    p.add_argument("--threads", type=_positive(int), help="CPU threads (default: all cores)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, or none)")
    p.add_argument("--experiment", default="ganops")
    p.add_argument("--register", metavar="NAME", help="register the model under NAME")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def train_main(argv: Sequence[str] | None = None) -> int:
    """`ganops train`: see `ganops train --help`."""
    from model.train_cli import run_train  # late: torch loads only for real commands

    env = dict(os.environ)
    try:
        args = _train_parser().parse_args(argv)
        return run_train(args, env)
    except UsageError as exc:
        return fail("train", str(exc))


# --- evaluate -----------------------------------------------------------------------------


def _evaluate_parser() -> _Parser:
    p = _Parser(prog="ganops evaluate", description="Score a model (and a champion) on data.")
    p.add_argument("data", type=Path, help="CycleGAN-layout folder with testA/ and testB/")
    p.add_argument("--model-uri", required=True, help="bundle dir, checkpoint or models:/ URI")
    p.add_argument("--champion-uri", help="compare against this model on the same inputs")
    p.add_argument("--tracking-uri", help="MLflow store for models:/ URIs")
    p.add_argument("--num-images", type=_positive(int), default=EvalConfig.num_images)
    p.add_argument("--seed", type=int, default=EvalConfig.seed)
    p.add_argument("--out", type=Path, help="write metrics.json, sample_grid.png, report.md")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """`ganops evaluate --model-uri URI [--champion-uri URI] DATA`."""
    import torch

    from model.bundle import BundleError, load_bundle
    from model.distributed import pick_device
    from model.evaluate import evaluate, load_eval_data

    env = dict(os.environ)
    try:
        args = _evaluate_parser().parse_args(argv)
        uri = tracking_uri_from(args.tracking_uri, env)
        device = pick_device()
        bundle = load_bundle(args.model_uri, device, tracking_uri=uri)
        champion = load_bundle(args.champion_uri, device, uri) if args.champion_uri else None
        cfg = EvalConfig(seed=args.seed, num_images=args.num_images)
        data = load_eval_data(_existing_dir(args.data), cfg, bundle.net.image_size)
    except (UsageError, BundleError, ValueError, OSError) as exc:
        return fail("evaluate", str(exc))
    with torch.inference_mode():
        rival = champion.generator if champion is not None else None
        report = evaluate(bundle.generator, data, cfg, device, rival)
    if args.out is not None:
        report.save(args.out)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_markdown())
    return 0


def _existing_dir(path: Path) -> Path:
    if not path.is_dir():
        raise UsageError(f"{path}: no such folder")
    return path


# --- stylize ------------------------------------------------------------------------------


def _stylize_parser() -> _Parser:
    p = _Parser(prog="ganops stylize", description="Apply a model to a folder of images.")
    p.add_argument("in_dir", type=Path, help="folder of images")
    p.add_argument("out_dir", type=Path, help="where the stylized images go, same names")
    p.add_argument("--model-uri", required=True, help="bundle dir, checkpoint or models:/ URI")
    p.add_argument("--tracking-uri", help="MLflow store for models:/ URIs")
    return p


def stylize_main(argv: Sequence[str] | None = None) -> int:
    """`ganops stylize --model-uri URI IN_DIR OUT_DIR`: n images in, n images out."""
    from model.bundle import BundleError, load_bundle
    from model.distributed import pick_device
    from model.stylize import StylizeError, stylize_folder

    env = dict(os.environ)
    try:
        args = _stylize_parser().parse_args(argv)
        device = pick_device()
        bundle = load_bundle(args.model_uri, device, tracking_uri_from(args.tracking_uri, env))
        written = stylize_folder(bundle.generator, args.in_dir, args.out_dir, device)
    except (UsageError, BundleError, StylizeError) as exc:
        return fail("stylize", str(exc))
    print(f"stylized {len(written)} image(s) into {args.out_dir}")
    return 0


# --- validate -----------------------------------------------------------------------------


def validate_main(argv: Sequence[str] | None = None) -> int:
    """`ganops validate DATA`: exit 0 when the data set is usable, else 2 with every problem."""
    from model.data import validate_dataset

    p = _Parser(prog="ganops validate", description="Check a data set before training.")
    p.add_argument("data", type=Path, help="CycleGAN-layout folder")
    p.add_argument("--image-size", type=_positive(int), default=PRESETS["tiny"].image_size)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    try:
        args = p.parse_args(argv)
    except UsageError as exc:
        return fail("validate", str(exc))
    report = validate_dataset(args.data, image_size=args.image_size)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_markdown())
    if not report.ok:
        return fail("validate", report.summary())
    return 0


COMMANDS = {
    "train": train_main,
    "evaluate": evaluate_main,
    "stylize": stylize_main,
    "validate": validate_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m model.cli COMMAND ...` (what the trainer image runs without the bot)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(f"usage: python -m model.cli {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return EXIT_USAGE
    return COMMANDS[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main())
