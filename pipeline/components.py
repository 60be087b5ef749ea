"""The pipeline's steps as lightweight KFP component functions.

Each function is plain Python: `make_components(image)` turns them into `@dsl.component`s
whose base image is our trainer image, given at compile time. KFP copies each function's
source into the container (or a kfp.local subprocess), so every import sits inside the body
and the real work is delegated to `pipeline.steps`, which the image has installed.

No `from __future__ import annotations` here: KFP reads the annotations as types.
"""

from dataclasses import dataclass
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import (
    Artifact,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
    PipelineTaskFinalStatus,
)
from kfp.dsl.python_component import PythonComponent


def ingest(
    source: str,
    image_size: int,
    preset: str,
    gpus: int,
    seed: int,
    synthetic_n: int,
    captured: str,
    events_dir: str,
    data_allow: str,
    data_anywhere: bool,
    dataset: Output[Dataset],
) -> str:
    """Fetch the data (synthetic, a folder, or a URI) into a Dataset; return its digest.

    `data_allow` (GANOPS_DATA_ALLOW, a JSON list) and `data_anywhere` (an approver's run) are
    the fetch rules: checked here, where the data is read, whoever asked."""
    import json

    from ganops.pipeline.steps import data, train
    from ganops.pipeline.steps.fastexit import exit_fast_when_done
    from ganops.pipeline.steps.fetchguard import DataRules

    exit_fast_when_done()
    size = train.resolve_net_size(preset, gpus, image_size)
    rules = DataRules(allow=tuple(json.loads(data_allow or "[]")), anywhere=data_anywhere)
    digest = data.ingest(
        rules=rules,
        source=source,
        out_dir=dataset.path,
        image_size=size,
        seed=seed,
        synthetic_n=synthetic_n,
        captured=captured,
        events_dir=events_dir,
    )
    dataset.metadata["digest"] = digest
    return digest


def validate(
    dataset: Input[Dataset],
    image_size: int,
    preset: str,
    gpus: int,
    events_dir: str,
    report: Output[Markdown],
) -> None:
    """Fail the run here, before any GPU time, when the data set is unusable."""
    from ganops.pipeline.steps import data, train
    from ganops.pipeline.steps.fastexit import exit_fast_when_done

    exit_fast_when_done()
    size = train.resolve_net_size(preset, gpus, image_size)
    data.validate(
        data_dir=dataset.path, image_size=size, report_path=report.path, events_dir=events_dir
    )


def train(
    dataset: Input[Dataset],
    data_digest: str,
    model_name: str,
    data: str,
    epochs: int,
    steps: int,
    lr: float,
    batch_size: int,
    gpus: int,
    nodes: int,
    image_size: int,
    preset: str,
    seed: int,
    auto_deploy: bool,
    min_score: float,
    synthetic_n: int,
    captured: str,
    mlflow_uri: str,
    events_dir: str,
    run_id: str,
    job_id: str,
    image: str,
    artifact_uri: str,
    request_id: str,
    checkpoint_minutes: float,
    model: Output[Model],
    loss_curve: Output[Artifact],
    node_pods: str = "",
    device_data_gb: float = -1.0,
) -> str:
    """Train the GAN (under torchrun with gpus > 1); resume from the durable checkpoints. The
    Model artifact holds the bundle only."""
    from ganops.pipeline.params import params_from_arguments
    from ganops.pipeline.steps import train as train_step
    from ganops.pipeline.steps.fastexit import exit_fast_when_done

    exit_fast_when_done()
    params = params_from_arguments(
        model=model_name,
        data=data,
        epochs=epochs,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        gpus=gpus,
        nodes=nodes,
        image_size=image_size,
        preset=preset,
        seed=seed,
        auto_deploy=auto_deploy,
        min_score=min_score,
        synthetic_n=synthetic_n,
        captured=captured,
    )
    # The curve artifact is a folder holding loss_curve.png, so the file keeps its extension.
    return train_step.run_train_step(
        params=params,
        data_dir=dataset.path,
        model_dir=model.path,
        loss_curve_path=loss_curve.path + "/loss_curve.png",
        data_digest=data_digest,
        mlflow_uri=mlflow_uri,
        events_dir=events_dir,
        kfp_run_id=run_id or job_id,
        image=image,
        artifact_uri=artifact_uri,
        request_id=request_id,
        checkpoint_minutes=checkpoint_minutes,
        device_data_gb=device_data_gb,
        node_pods=node_pods,
    )


def evaluate(
    dataset: Input[Dataset],
    model: Input[Model],
    model_name: str,
    min_score: float,
    mlflow_uri: str,
    mlflow_run_id: str,
    events_dir: str,
    metrics: Output[Metrics],
    summary: Output[Markdown],
    sample_grid: Output[Artifact],
) -> NamedTuple(  # type: ignore[valid-type]
    "EvalOutputs",
    [("deploy_score", float), ("gate_bar", float), ("champion_version", str), ("scores", str)],
):
    """Score the challenger against the champion (or the untrained generator) on fixed inputs."""
    from ganops.pipeline.steps import evaluate as steps
    from ganops.pipeline.steps.fastexit import exit_fast_when_done

    exit_fast_when_done()
    # The grid artifact is a folder holding sample_grid.png, so the file keeps its extension.
    out = steps.run_evaluate_step(
        data_dir=dataset.path,
        model_dir=model.path,
        model=model_name,
        min_score=min_score,
        mlflow_uri=mlflow_uri,
        mlflow_run_id=mlflow_run_id,
        events_dir=events_dir,
        summary_path=summary.path,
        grid_path=sample_grid.path + "/sample_grid.png",
    )
    for name, value in out.metrics.items():
        metrics.log_metric(name, value)
    metrics.log_metric("gate_bar", out.gate_bar)
    # A plain tuple: the NamedTuple class exists only in the annotation inside the container.
    return (out.deploy_score, out.gate_bar, out.champion_version, out.scores_json)


def register(
    model: Input[Model],
    model_name: str,
    mlflow_uri: str,
    mlflow_run_id: str,
    champion_version: str,
    scores: str,
    run_id: str,
    job_id: str,
    events_dir: str,
) -> str:
    """Log the bundle as an MLflow model version aliased `challenger`, with its tags."""
    from ganops.pipeline.steps import registry
    from ganops.pipeline.steps.fastexit import exit_fast_when_done

    exit_fast_when_done()
    return registry.run_register_step(
        model_dir=model.path,
        model=model_name,
        mlflow_uri=mlflow_uri,
        mlflow_run_id=mlflow_run_id,
        champion_version=champion_version,
        scores_json=scores,
        kfp_run_id=run_id or job_id,
        events_dir=events_dir,
    )


def gate_pass(
    version: str,
    model_name: str,
    deploy_score: float,
    gate_bar: float,
    scores: str,
    auto_deploy: bool,
    mlflow_uri: str,
    events_dir: str,
) -> str:
    """The challenger beat the bar: wait for a human, or promote it when auto_deploy is on."""
    from ganops.pipeline.steps import registry
    from ganops.pipeline.steps.fastexit import exit_fast_when_done

    exit_fast_when_done()
    return registry.run_gate_step(
        passed=True,
        version=version,
        model=model_name,
        deploy_score=deploy_score,
        bar=gate_bar,
        scores_json=scores,
        auto_deploy=auto_deploy,
        mlflow_uri=mlflow_uri,
        events_dir=events_dir,
    )


def gate_reject(
    version: str,
    model_name: str,
    deploy_score: float,
    gate_bar: float,
    scores: str,
    mlflow_uri: str,
    events_dir: str,
) -> str:
    """The challenger did not beat the bar: the run ends gated, with the reason."""
    from ganops.pipeline.steps import registry
    from ganops.pipeline.steps.fastexit import exit_fast_when_done

    exit_fast_when_done()
    return registry.run_gate_step(
        passed=False,
        version=version,
        model=model_name,
        deploy_score=deploy_score,
        bar=gate_bar,
        scores_json=scores,
        auto_deploy=False,
        mlflow_uri=mlflow_uri,
        events_dir=events_dir,
    )


def finalize(
    status: PipelineTaskFinalStatus,
    model_name: str,
    auto_deploy: bool,
    image: str,
    mlflow_uri: str,
    run_id: str,
    job_id: str,
    events_dir: str,
    summary: Output[Markdown],
) -> str:
    """Exit handler: record the final state (succeeded, failed at step X, gated) for the bot."""
    from ganops.pipeline.steps import finish
    from ganops.pipeline.steps.fastexit import exit_fast_when_done

    exit_fast_when_done()
    return finish.run_finalize_step(
        kfp_state=status.state,
        error_message=status.error_message or "",
        model=model_name,
        auto_deploy=auto_deploy,
        image=image,
        mlflow_uri=mlflow_uri,
        run_id=run_id or job_id,
        events_dir=events_dir,
        summary_path=summary.path,
    )


@dataclass(frozen=True)
class Components:
    ingest: PythonComponent
    validate: PythonComponent
    train: PythonComponent
    evaluate: PythonComponent
    register: PythonComponent
    gate_pass: PythonComponent
    gate_reject: PythonComponent
    finalize: PythonComponent


# The steps that never load a network: they run on the slim `steps` image (no torch) when
# one is given. train, evaluate and register load or log the generator, so they need torch.
SLIM_STEPS = ("ingest", "validate", "gate_pass", "gate_reject", "finalize")


def make_components(image: str, steps_image: str | None = None) -> Components:
    """Every step as a component on `image` (the trainer image), but SLIM_STEPS on
    `steps_image` when set; both must have ganops (and kfp) installed."""

    def wrap(func: object, name: str) -> PythonComponent:
        base = steps_image if steps_image and name in SLIM_STEPS else image
        # kfp itself comes with ganops in the image: no pip install at task start.
        return dsl.component(func=func, base_image=base, install_kfp_package=False)

    steps = {
        "ingest": ingest,
        "validate": validate,
        "train": train,
        "evaluate": evaluate,
        "register": register,
        "gate_pass": gate_pass,
        "gate_reject": gate_reject,
        "finalize": finalize,
    }
    return Components(**{name: wrap(func, name) for name, func in steps.items()})
