"""`ganops evaluate | stylize | validate`: thin argparse adapters over `model/`.

Each `*_main(argv)` parses, reads the environment (here and nowhere below), builds frozen
configs, picks the device once and calls the library. Bad arguments and bad data end with
one line on stderr and exit code 2; only the error types we expect are caught.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ganops.model.cli.args import (
    EXIT_GATED,
    GATE_EPILOG,
    Parser,
    UsageError,
    existing_dir,
    fail,
    positive,
    tracking_uri_from,
)
from ganops.model.config import PRESETS, EvalConfig

# --- evaluate -----------------------------------------------------------------------------


def _evaluate_parser() -> Parser:
    p = Parser(
        prog="ganops evaluate",
        description="Score a model (and a champion) on data.",
        epilog=GATE_EPILOG,
    )
    p.add_argument("data", type=Path, help="CycleGAN-layout folder with testA/ and testB/")
    p.add_argument("--model-uri", required=True, help="bundle dir, checkpoint or models:/ URI")
    p.add_argument(
        "--champion-uri", help="compare against this model on the same inputs (default: none)"
    )
    p.add_argument(
        "--tracking-uri", help="MLflow store for models:/ URIs (default: $MLFLOW_TRACKING_URI)"
    )
    p.add_argument(
        "--num-images",
        type=positive(int),
        default=EvalConfig.num_images,
        help="test images to score, > 0 (default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=EvalConfig.seed, help="sampling seed (default: %(default)s)"
    )
    p.add_argument(
        "--out",
        type=Path,
        help="write metrics.json, sample_grid.png, report.md here (default: print only)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--gate",
        action="store_true",
        help="apply the pipeline's gate (paired bootstrap vs --champion-uri) and exit 3 "
        "when the model does not pass it (default: report only)",
    )
    p.add_argument(
        "--gate-margin",
        type=float,
        default=EvalConfig.gate_margin,
        help="what the challenger must beat the champion's deploy score by, with the gate's "
        "confidence (default: %(default)s, the pipeline's: an equal model passes)",
    )
    return p


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """`ganops evaluate --model-uri URI [--champion-uri URI] DATA`."""
    import torch

    from ganops.model.bundle import BundleError, load_bundle
    from ganops.model.distributed import pick_device
    from ganops.model.evaluate import evaluate, load_eval_data

    env = dict(os.environ)
    try:
        args = _evaluate_parser().parse_args(argv)
        uri = tracking_uri_from(args.tracking_uri, env)
        device = pick_device()
        bundle = load_bundle(args.model_uri, device, tracking_uri=uri)
        champion = load_bundle(args.champion_uri, device, uri) if args.champion_uri else None
        cfg = EvalConfig(seed=args.seed, num_images=args.num_images, gate_margin=args.gate_margin)
        data = load_eval_data(existing_dir(args.data), cfg, bundle.net.image_size)
        if args.gate and champion is None:
            raise UsageError("--gate needs --champion-uri: the gate compares with a champion")
    except (UsageError, BundleError, ValueError, OSError) as exc:
        return fail("evaluate", str(exc))
    with torch.inference_mode():
        rival = champion.generator if champion is not None else None
        report = evaluate(bundle.generator, data, cfg, device, rival)
    if args.out is not None:
        report.save(args.out)
    document = report.to_dict()
    passed = True
    if args.gate:
        gate = _gate(report, data, cfg)
        passed = bool(gate["passed"])
        document["gate"] = gate
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(report.to_markdown())
        if args.gate:
            print(_gate_line(document["gate"]))
    return 0 if passed else EXIT_GATED


def _gate(report: Any, data: Any, cfg: EvalConfig) -> dict[str, Any]:
    """The pipeline's gate against the champion: the same paired bootstrap, same settings."""
    from ganops.model.gate import compare

    if report.outputs is None or report.champion_outputs is None:  # evaluate() keeps them
        raise RuntimeError("the evaluation kept no outputs to compare")
    comparison = compare(
        report.outputs,
        report.champion_outputs,
        data,
        resamples=cfg.bootstrap_resamples,
        confidence=cfg.gate_confidence,
        margin=cfg.gate_margin,
        seed=cfg.seed,
    )
    return comparison.to_dict()


def _gate_line(gate: dict[str, Any]) -> str:
    verdict = "passed" if gate["passed"] else "rejected"
    return (
        f"gate: {verdict}: deploy score {gate['diff']:+.4f} vs the champion, "
        f"{gate['confidence']:.0%} lower bound {gate['lower']:+.4f} "
        f"(must exceed {gate['margin']:+.4f}; {gate['resamples']} paired resamples)"
    )


# --- stylize ------------------------------------------------------------------------------


def _stylize_parser() -> Parser:
    p = Parser(prog="ganops stylize", description="Apply a model to a folder of images.")
    p.add_argument("in_dir", type=Path, help="folder of images")
    p.add_argument("out_dir", type=Path, help="where the stylized images go, same names")
    p.add_argument("--model-uri", required=True, help="bundle dir, checkpoint or models:/ URI")
    p.add_argument(
        "--tracking-uri", help="MLflow store for models:/ URIs (default: $MLFLOW_TRACKING_URI)"
    )
    return p


def stylize_main(argv: Sequence[str] | None = None) -> int:
    """`ganops stylize --model-uri URI IN_DIR OUT_DIR`: n images in, n images out."""
    from ganops.model.bundle import BundleError, load_bundle
    from ganops.model.distributed import pick_device
    from ganops.model.stylize import StylizeError, stylize_folder

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
    from ganops.model.data import validate_dataset

    p = Parser(prog="ganops validate", description="Check a data set before training.")
    p.add_argument("data", type=Path, help="CycleGAN-layout folder")
    p.add_argument(
        "--image-size",
        type=positive(int),
        default=PRESETS["tiny"].image_size,
        help="the size images are checked at, > 0 (default: %(default)s)",
    )
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
