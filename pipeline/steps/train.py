"""The train step: `model.train.train` on the ingested data, with progress for the launcher.

With gpus > 1 the step re-runs itself under torchrun (`python -m pipeline.steps.train --job
FILE`), one process per GPU; rank 0 reports. Checkpoints live on the step's Model artifact,
so a retried task resumes where the last one stopped, in the same MLflow run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.registry import registered_name
from pipeline.events import ProgressThrottle, step_scope
from pipeline.placement import torchrun_command
from pipeline.ports import RunParams

if TYPE_CHECKING:
    from model.config import TrainConfig
    from model.distributed import DistInfo
    from model.tracking import Tracker
    from model.train import ProgressEvent

JOB_FILE, RESULT_FILE, MLFLOW_RUN_FILE = "train_job.json", "train_result.json", "mlflow_run.json"
KFP_PROGRESS_EVERY_S = 5.0


class TrainStepError(Exception):
    """The distributed trainer failed (its log is above in the step's output)."""


def resolve_net_size(preset: str | None, gpus: int, image_size: int | None) -> int:
    """The image size the run trains at (ingest and validate resize to it)."""
    from model.config import image_size_for

    return image_size_for(preset_name=preset, gpus=gpus, image_size=image_size)


def train_config(params: RunParams) -> TrainConfig:
    """`model.config.train_config` on the run's parameters: unset values are the preset's."""
    from model.config import train_config as config_for

    return config_for(
        model=params.model,
        preset_name=params.preset,
        gpus=params.gpus,
        image_size=params.image_size,
        epochs=params.epochs,
        steps=params.steps,
        lr=params.lr,
        batch_size=params.batch_size,
        seed=params.seed,
    )


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """Everything one trainer process needs; JSON, so torchrun ranks can read it from a file."""

    params: dict[str, Any]
    data_dir: str
    out_dir: str
    loss_curve_path: str
    mlflow_uri: str
    events_dir: str
    tags: dict[str, str]


def run_train_step(
    *,
    params: RunParams,
    data_dir: str,
    model_dir: str,
    loss_curve_path: str,
    data_digest: str,
    mlflow_uri: str,
    events_dir: str,
    kfp_run_id: str,
    image: str,
) -> str:
    """Train; return the MLflow run id ("" without tracking)."""
    with step_scope(events_dir, "train") as facts:
        tags = {
            "data_digest": data_digest,
            "image": image,
            "kfp_run_id": kfp_run_id,
            "params": json.dumps(params.as_dict(), sort_keys=True),
        }
        job = TrainJob(
            params.as_dict(), data_dir, model_dir, loss_curve_path, mlflow_uri, events_dir, tags
        )
        result = _torchrun(job, params.gpus) if params.gpus > 1 else train_job(job)
        facts.update(result)
        return str(result.get("mlflow_run_id") or "")


def train_job(job: TrainJob, info: DistInfo | None = None) -> dict[str, Any]:
    """Run the trainer in this process (one rank of several under torchrun)."""
    from model import distributed
    from model.checkpoint import checkpoint_path
    from model.tracking import make_tracker
    from model.train import train

    info = info or distributed.DistInfo()
    params = RunParams(**job.params)
    device = distributed.pick_device(info)
    distributed.setup(info, device)
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    resume = checkpoint_path(out).is_file()
    uri = job.mlflow_uri if info.is_main else ""
    tracker = make_tracker(uri or None, experiment=registered_name(params.model))
    previous = _read_json(out / MLFLOW_RUN_FILE).get("run_id")
    try:
        with tracker.start_run(
            run_name=f"ct {job.tags['kfp_run_id']}", tags=job.tags, run_id=previous
        ) as run:
            if info.is_main and run.run_id:
                (out / MLFLOW_RUN_FILE).write_text(json.dumps({"run_id": run.run_id}))
            report = Reporter(job.events_dir, run)
            result = train(
                train_config(params),
                Path(job.data_dir),
                device,
                run,
                out,
                resume=resume,
                progress=report,
            )
            if info.is_main:
                _fit_drift_reference(Path(job.data_dir), result.bundle_dir, params.seed)
                plot_loss_curve(result.history, job.loss_curve_path)
                curve_uri = run.log_image(_open_png(job.loss_curve_path), "loss_curve.png")
                if curve_uri:
                    run.set_tags({"loss_curve": curve_uri})
    finally:
        distributed.teardown()
    return {
        "mlflow_run_id": run.run_id,
        "steps": result.steps,
        "resumed": resume,
        "final_losses": result.final_losses,
        "loss_curve": job.loss_curve_path,
        "images_per_s": result.images_per_s,
    }


def _fit_drift_reference(data_dir: Path, bundle_dir: Path, seed: int) -> None:
    """The training inputs' drift profile beside the weights (`model.drift.attach_reference`)."""
    from model.bundle import BUNDLE_JSON
    from model.drift import attach_reference

    size = json.loads((bundle_dir / BUNDLE_JSON).read_text())["net"]["image_size"]
    print(attach_reference(bundle_dir, data_dir, seed=seed, image_size=size), flush=True)


class Reporter:
    """The train progress callback: events for local runs, MLflow for Kubeflow runs."""

    def __init__(self, events_dir: str, tracker: Tracker) -> None:
        self.events = ProgressThrottle(events_dir) if events_dir else None
        self.tracker = tracker
        self._last_mlflow: float | None = None
        self._total_tagged = False

    def __call__(self, ev: ProgressEvent) -> None:
        if self.events is not None:
            self.events(ev.step, ev.total_steps, ev.losses)
            return
        if not self._total_tagged:
            self.tracker.set_tags({"train_total": str(ev.total_steps)})
            self._total_tagged = True
        now = time.monotonic()
        last = self._last_mlflow
        if last is None or now - last >= KFP_PROGRESS_EVERY_S or ev.step == ev.total_steps:
            self.tracker.log_metrics({"progress_step": ev.step}, step=ev.step)
            self._last_mlflow = now


def plot_loss_curve(history: Sequence[tuple[int, Mapping[str, float]]], path: str) -> None:
    """One line per loss over the training steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    names = sorted({k for _, losses in history for k in losses})
    for name in names:
        points = [(s, v[name]) for s, v in history if name in v]
        ax.plot([p[0] for p in points], [p[1] for p in points], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training losses")
    if names:
        ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)


def _torchrun(job: TrainJob, gpus: int) -> dict[str, Any]:
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    job_file = out / JOB_FILE
    job_file.write_text(json.dumps(dataclasses.asdict(job)))
    (out / RESULT_FILE).unlink(missing_ok=True)
    cmd = torchrun_command(gpus, "pipeline.steps.train", ["--job", str(job_file)])
    print("train:", " ".join(cmd), flush=True)
    code = subprocess.run(cmd, check=False).returncode
    if code != 0:
        raise TrainStepError(f"torchrun with {gpus} processes exited with code {code}")
    return _read_json(out / RESULT_FILE)


def _open_png(path: str) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        return image.copy()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def main(argv: Sequence[str] | None = None) -> int:
    """One torchrun rank: `python -m pipeline.steps.train --job FILE`."""
    from model.distributed import info_from_env

    parser = argparse.ArgumentParser(prog="python -m pipeline.steps.train")
    parser.add_argument("--job", type=Path, required=True)
    args = parser.parse_args(argv)
    job = TrainJob(**json.loads(args.job.read_text()))
    info = info_from_env(os.environ)  # torchrun's RANK / WORLD_SIZE / LOCAL_RANK
    result = train_job(job, info)
    if info.is_main:
        (Path(job.out_dir) / RESULT_FILE).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
