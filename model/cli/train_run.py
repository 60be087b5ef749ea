"""The body of `ganops train`: configs from arguments, data, tracking, training, a summary.

Kept apart from `model.cli.train` (the parser) so that `--help` and argument errors never
import torch.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import torch

from ganops.model import distributed
from ganops.model.bundle import BundleError, load_bundle
from ganops.model.cli.args import UsageError, fail, tracking_uri_from
from ganops.model.config import EvalConfig, TrainConfig
from ganops.model.config import train_config as config_for
from ganops.model.data import make_synthetic, validate_dataset
from ganops.model.data_cache import ENV, device_data_gb
from ganops.model.drift import attach_reference
from ganops.model.networks import check_net_config
from ganops.model.tracking import NullTracker, Tracker, TrackingError, make_tracker
from ganops.model.train import ProgressEvent, TrainError, TrainResult, amp_dtype, train

SYNTHETIC_TRAIN, SYNTHETIC_TEST = 400, 256


def train_config(args: argparse.Namespace, device: torch.device) -> TrainConfig:
    """The run's frozen config: `model.config.train_config` on the flags (auto: by device)."""
    gpus = max(torch.cuda.device_count(), 1) if device.type == "cuda" else 0
    try:
        cfg = config_for(
            model=args.model,
            preset_name=None if args.preset == "auto" else args.preset,
            gpus=gpus,
            image_size=args.image_size,
            epochs=args.epochs,
            steps=args.steps,
            lr=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
            amp=not args.no_amp,
            threads=args.threads,
            checkpoint_every=args.checkpoint_every,
        )
        check_net_config(cfg.net, training=True)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return cfg


def data_budget(flag: float | None, env: Mapping[str, str]) -> float:
    """--device-data-gb, else GANOPS_DEVICE_DATA_GB, else the default; GB >= 0."""
    try:
        if flag is None:
            return device_data_gb(env)
        return device_data_gb({ENV: str(flag)})
    except ValueError as exc:
        message = str(exc) if flag is None else f"--device-data-gb must be >= 0, got {flag:g}"
        raise UsageError(message) from None


def prepare_data(args: argparse.Namespace, cfg: TrainConfig, info: distributed.DistInfo) -> Path:
    """The data folder: the given one, or the synthetic set under OUT/data (made by rank 0
    once and reused), validated before any training time is spent."""
    if args.synthetic:
        root = args.out / "data"
        if info.is_main and not (root / "testB_gt").is_dir():
            size = cfg.net.image_size
            make_synthetic(root, n_train=SYNTHETIC_TRAIN, n_test=SYNTHETIC_TEST, image_size=size)
        distributed.barrier()
    else:
        root = args.data
    report = validate_dataset(root, image_size=cfg.net.image_size)
    if not report.ok:
        raise UsageError(report.summary())
    return Path(root)


class ProgressPrinter:
    """One line every few seconds, and the last step, with an ETA from the steps' rate over
    the last minute (the warm-up step would skew a whole-run average). The wording matches
    `ganops.pipeline.progress`, which `model` may not import."""

    WINDOW_S = 60.0

    def __init__(
        self,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        out: TextIO | None = None,
    ) -> None:
        self.interval, self._last, self.clock, self.out = interval, 0.0, clock, out
        self._seen: deque[tuple[float, int]] = deque()

    def __call__(self, event: ProgressEvent) -> None:
        now = self.clock()
        self._seen.append((now, event.step))
        while len(self._seen) > 2 and self._seen[1][0] < now - self.WINDOW_S:
            self._seen.popleft()
        if event.step < event.total_steps and now - self._last < self.interval:
            return
        self._last = now
        losses = "  ".join(f"{k} {v:.3f}" for k, v in event.losses.items())
        pct = 100 * event.step // event.total_steps
        print(
            f"step {event.step}/{event.total_steps} ({pct}%)  {losses}  "
            f"{event.images_per_s:.0f} img/s{self._eta(event)}",
            flush=True,
            file=self.out or sys.stdout,
        )

    def _eta(self, event: ProgressEvent) -> str:
        (t0, s0), (t1, s1) = self._seen[0], self._seen[-1]
        if event.step >= event.total_steps or t1 <= t0 or s1 <= s0:
            return ""  # no rate yet
        left = (event.total_steps - event.step) * (t1 - t0) / (s1 - s0)
        if left < 60:
            return "  ETA under 1 min"
        minutes = math.ceil(left / 60)
        return (
            f"  ETA {minutes} min"
            if minutes < 60
            else f"  ETA {minutes // 60} h {minutes % 60:02d} min"
        )


def _after_training(
    args: argparse.Namespace,
    cfg: TrainConfig,
    data: Path,
    run: Tracker,
    result: TrainResult,
    device: torch.device,
    facts: dict[str, Any],
) -> list[str]:
    """Evaluate the bundle, log metrics, grid and model; returns summary lines (and puts the
    same into `facts`, for --json)."""
    from ganops.model.evaluate import evaluate, load_eval_data, untrained_baseline

    lines = []
    bundle = load_bundle(result.bundle_dir, device)
    if not args.no_eval:
        ecfg = EvalConfig()
        eval_data = load_eval_data(data, ecfg, cfg.net.image_size)
        report = evaluate(bundle.generator, eval_data, ecfg, device)
        base = untrained_baseline(cfg.net, eval_data, ecfg, device)
        run.log_metrics(report.metrics, step=result.steps)
        run.log_image(report.grid, "sample_grid.png")
        report.save(args.out / "eval")
        shown = {
            k: report.metrics[k] for k in ("ssim", "kid", "deploy_score") if k in report.metrics
        }
        facts["evaluation"] = {
            "metrics": dict(report.metrics),
            "untrained_deploy_score": base.deploy_score,
            "grid": str(args.out / "eval"),
        }
        lines.append(
            "evaluation: "
            + "  ".join(f"{k} {v:.3f}" for k, v in shown.items())
            + f"  (untrained deploy_score {base.deploy_score:.3f}); grid {args.out / 'eval'}"
        )
    version = run.log_bundle(result.bundle_dir, bundle.generator, args.register)
    if run.run_id:
        registered = f", registered {args.register} version {version}" if version else ""
        lines.append(f"mlflow: run {run.run_id}{registered}")
        facts.update(mlflow_run_id=run.run_id, registered_version=version)
    return lines


def _facts(cfg: TrainConfig, device: torch.device, result: TrainResult) -> dict[str, Any]:
    """What `_summary` says, as data: `ganops train --json`."""
    return {
        "model": cfg.net.model,
        "image_size": cfg.net.image_size,
        "steps": result.steps,
        "seconds": result.seconds,
        "images_per_s": result.images_per_s,
        "device": device.type,
        "precision": "bf16" if amp_dtype(device, cfg.amp) else "fp32",
        "final_losses": dict(result.final_losses),
        "bundle": str(result.bundle_dir),
        "checkpoint": str(result.checkpoint_path),
    }


def _summary(cfg: TrainConfig, device: torch.device, result: TrainResult) -> list[str]:
    names = {torch.bfloat16: "bf16", torch.float16: "fp16 + grad scaler"}
    dtype = amp_dtype(device, cfg.amp)
    precision = names[dtype] if dtype is not None else "fp32"
    losses = "  ".join(f"{k} {v:.3f}" for k, v in result.final_losses.items())
    return [
        f"trained {cfg.net.model} ({cfg.net.image_size} px, ngf {cfg.net.ngf}, "
        f"{cfg.net.n_blocks} blocks) for {result.steps} steps in {result.seconds:.1f} s "
        f"({result.images_per_s:.0f} img/s on {device.type}, {precision})",
        f"final losses: {losses}",
        f"bundle: {result.bundle_dir}   checkpoint: {result.checkpoint_path}",
    ]


def run_train(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Everything after parsing. Raises UsageError for bad arguments and bad data."""
    try:
        info = distributed.info_from_env(env)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    device = distributed.pick_device(info)
    cfg = train_config(args, device)
    budget = data_budget(args.device_data_gb, env)
    tracking = tracking_uri_from(args.tracking_uri, env)
    if args.register and not tracking:
        raise UsageError("--register needs --tracking-uri (or MLFLOW_TRACKING_URI)")
    distributed.setup(info, device)
    try:
        data = prepare_data(args, cfg, info)
        tracker = make_tracker(tracking, args.experiment) if info.is_main else NullTracker()
        # With --json, stdout holds the one JSON document; progress goes to stderr.
        progress = None if args.quiet else ProgressPrinter(out=sys.stderr if args.json else None)
        with tracker.start_run(run_name=f"{cfg.net.model}-train") as run:
            result = train(
                cfg, data, device, run, args.out, args.resume, progress, device_data_gb=budget
            )
            lines = _summary(cfg, device, result)
            facts = _facts(cfg, device, result)
            if info.is_main:
                # Before logging, so a CLI-trained bundle serves with drift monitoring too.
                drift = attach_reference(
                    result.bundle_dir, data, seed=cfg.seed, image_size=cfg.net.image_size
                )
                lines.append(drift)
                facts["drift_reference"] = drift
                lines += _after_training(args, cfg, data, run, result, device, facts)
    except TrainError as exc:
        return fail("train", str(exc))
    except (TrackingError, BundleError) as exc:
        print(f"ganops train: error: {exc}", file=sys.stderr)
        return 1
    finally:
        distributed.teardown()
    if info.is_main:
        print(json.dumps(facts, indent=2, default=str) if args.json else "\n".join(lines))
    return 0
