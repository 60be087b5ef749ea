"""The train step: `model.train.train` on the ingested data, with progress for the launcher.

With gpus > 1 the step re-runs itself under torchrun (`python -m ganops.pipeline.steps.train --job
FILE`), one process per GPU; rank 0 reports. The trainer works in a folder beside the Model
artifact (`training_dir`), and checkpoints are kept, when the run has an artifact URI, at
`<artifact_uri>/<request id>/` with the MLflow run id: on Kubeflow a retried pod starts with
empty output folders (and a killed pod uploads nothing), so the durable copy is what lets it
resume at the step reached, in the same run. The Model artifact gets only the bundle
(generator, bundle.json, drift reference): a checkpoint there would be a third copy, uploaded
to the pipeline root with every run.
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

from ganops.model.registry import registered_name
from ganops.pipeline.events import ProgressThrottle, step_scope
from ganops.pipeline.placement import torchrun_command
from ganops.pipeline.ports import RunParams
from ganops.pipeline.steps import durable
from ganops.pipeline.steps.job import TrainJob
from ganops.pipeline.steps.trainjob import node_job, upload_outputs

if TYPE_CHECKING:
    from ganops.model.config import TrainConfig
    from ganops.model.distributed import DistInfo
    from ganops.model.tracking import Tracker
    from ganops.model.train import ProgressEvent

JOB_FILE, RESULT_FILE = "train_job.json", "train_result.json"
KFP_PROGRESS_EVERY_S = 5.0


class TrainStepError(Exception):
    """The distributed trainer failed (its log is above in the step's output)."""


def resolve_net_size(preset: str | None, gpus: int, image_size: int | None) -> int:
    """The image size the run trains at (ingest and validate resize to it)."""
    from ganops.model.config import image_size_for

    return image_size_for(preset_name=preset, gpus=gpus, image_size=image_size)


def train_config(params: RunParams, *, checkpoint_minutes: float | None = None) -> TrainConfig:
    """`model.config.train_config` on the run's parameters: unset values are the preset's."""
    from ganops.model.config import train_config as config_for

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
        checkpoint_minutes=checkpoint_minutes,
    )


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
    artifact_uri: str = "",
    request_id: str = "",
    checkpoint_minutes: float | None = None,
    device_data_gb: float | None = None,
    node_pods: str = "",
) -> str:
    """Train; return the MLflow run id ("" without tracking).

    Durable state is keyed by `request_id` (the KFP run id for runs started elsewhere).
    `device_data_gb` (the bot's GANOPS_DEVICE_DATA_GB) wins over the pod's environment;
    None, negative (the pipeline parameter's "unset") or NaN: the pod's environment decides.
    """
    with step_scope(events_dir, "train") as facts:
        work = training_dir(model_dir)
        tags = {
            "data_digest": data_digest,
            "image": image,
            "kfp_run_id": kfp_run_id,
            "params": json.dumps(params.as_dict(), sort_keys=True),
        }
        job = TrainJob(
            params.as_dict(),
            data_dir,
            str(work),
            loss_curve_path,
            mlflow_uri,
            events_dir,
            tags,
            durable.durable_dir(artifact_uri=artifact_uri, request_id=request_id or kfp_run_id),
            checkpoint_minutes,
            device_data_gb=_set_budget(device_data_gb),
        )
        if params.nodes > 1:
            from ganops.pipeline.steps.trainjob import NodePods, train_on_nodes

            pods = NodePods.from_json(node_pods) if node_pods else None
            result = train_on_nodes(
                job, nodes=params.nodes, gpus=params.gpus, image=image, pods=pods
            )
        else:
            result = _torchrun(job, params.gpus) if params.gpus > 1 else train_job(job)
        publish_bundle(work, Path(model_dir), durable=bool(job.durable_dir))
        facts.update(result)
        return str(result.get("mlflow_run_id") or "")


def _set_budget(gb: float | None) -> float | None:
    """The pipeline parameter's budget, or None where it is unset (negative) or not a number."""
    return float(gb) if gb is not None and gb >= 0 else None


def training_dir(model_dir: str) -> Path:
    """The trainer's folder (checkpoints/, mlflow_run.json, bundle/), beside the Model
    artifact's folder so that KFP never uploads it. It is the same for every torchrun rank, and
    a retry in the same folders (a local run) finds its checkpoint there."""
    model = Path(model_dir)
    return model.with_name(f"{model.name}.training")


def publish_bundle(work: Path, model_dir: Path, *, durable: bool) -> None:
    """Copy the bundle, and only the bundle, into the Model artifact. With a durable store the
    trainer's folder is dropped: the store's checkpoints are the ones a retry resumes from."""
    import shutil

    target = model_dir / "bundle"
    if target.exists():
        shutil.rmtree(target)
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(work / "bundle", target)
    if durable:
        shutil.rmtree(work, ignore_errors=True)


def train_job(job: TrainJob, info: DistInfo | None = None) -> dict[str, Any]:
    """Run the trainer in this process (one rank of several under torchrun)."""
    from ganops.model import distributed
    from ganops.model.checkpoint import CHECKPOINT_NAME
    from ganops.model.data_cache import device_data_gb
    from ganops.model.tracking import make_tracker
    from ganops.model.train import train

    info = info or distributed.DistInfo()
    # Above this budget the images stream from a cache on disk: the bot's setting, carried
    # by the job, else the pod's own GANOPS_DEVICE_DATA_GB (a run started elsewhere).
    budget = job.device_data_gb
    if budget is None:
        try:
            budget = device_data_gb(os.environ)
        except ValueError as exc:
            raise TrainStepError(str(exc)) from None
    params = RunParams(**job.params)
    device = distributed.pick_device(info)
    distributed.setup(info, device)
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    uri = job.mlflow_uri if info.is_main else ""
    tracker = make_tracker(uri or None, experiment=registered_name(params.model))
    durable_url = job.durable_dir or None
    previous = durable.mlflow_run_id(out, durable_url)
    try:
        with tracker.start_run(
            run_name=f"ct {job.tags['kfp_run_id']}", tags=job.tags, run_id=previous
        ) as run:
            if info.is_main and run.run_id and run.run_id != previous:
                durable.save_mlflow_run_id(out, durable_url, run.run_id)
                durable.log_data_input(job.mlflow_uri, run.run_id, Path(job.data_dir))
            report = Reporter(job.events_dir, run)
            result = train(
                train_config(params, checkpoint_minutes=job.checkpoint_minutes),
                Path(job.data_dir),
                device,
                run,
                out,
                resume=True,  # from out/ or the durable copy, when either has a checkpoint
                progress=report,
                durable_url=f"{durable_url}/checkpoints/{CHECKPOINT_NAME}" if durable_url else None,
                device_data_gb=budget,
            )
            if info.is_main:
                for note in result.notes:
                    print(f"train: {note}", flush=True)
                if result.resumed_from:
                    print(f"train: resumed from the checkpoint at step {result.resumed_from}",
                          flush=True)  # fmt: skip
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
        "resumed": result.resumed_from > 0,
        "resumed_from": result.resumed_from,
        "final_losses": result.final_losses,
        "loss_curve": job.loss_curve_path,
        "images_per_s": result.images_per_s,
        "notes": result.notes,
    }


def _fit_drift_reference(data_dir: Path, bundle_dir: Path, seed: int) -> None:
    """The training inputs' drift profile beside the weights (`model.drift.attach_reference`)."""
    from ganops.model.bundle import BUNDLE_JSON
    from ganops.model.drift import attach_reference

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
    cmd = torchrun_command(gpus, "ganops.pipeline.steps.train", ["--job", str(job_file)])
    print("train:", " ".join(cmd), flush=True)
    code = subprocess.run(cmd, check=False).returncode
    if code != 0:
        raise TrainStepError(f"torchrun with {gpus} processes exited with code {code}")
    return durable.read_json(out / RESULT_FILE)


def _open_png(path: str) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        return image.copy()


def main(argv: Sequence[str] | None = None) -> int:
    """One torchrun rank: `python -m ganops.pipeline.steps.train --job FILE`."""
    from ganops.model.distributed import info_from_env

    parser = argparse.ArgumentParser(prog="python -m ganops.pipeline.steps.train")
    parser.add_argument("--job", required=True, help="a job file, or its durable URL")
    args = parser.parse_args(argv)
    info = info_from_env(os.environ)  # torchrun's RANK / WORLD_SIZE / LOCAL_RANK
    job = node_job(args.job, info.rank) if "://" in args.job else _local_job(args.job)
    result = train_job(job, info)
    if info.is_main:
        (Path(job.out_dir) / RESULT_FILE).write_text(json.dumps(result, default=str))
        if job.upload_outputs:
            upload_outputs(job, result)
    return 0


def _local_job(path: str) -> TrainJob:
    return TrainJob(**json.loads(Path(path).read_text()))


if __name__ == "__main__":
    raise SystemExit(main())
