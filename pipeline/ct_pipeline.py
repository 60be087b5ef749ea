"""The continuous-training pipeline: ingest -> validate -> train -> evaluate -> register -> gate.

`build_pipeline(image)` returns the KFP v2 pipeline with every step on the trainer `image`;
`compile_pipeline(path, image)` writes the YAML a user uploads to Kubeflow. The same pipeline
object runs locally under kfp.local. A `dsl.ExitHandler` step (`finalize`) records how the run
ended, whatever happened inside.
"""

# No `from __future__ import annotations`: KFP reads the pipeline signature's types.
from pathlib import Path
from typing import Any

from kfp import compiler, dsl
from kfp.dsl import PipelineTask
from kfp.dsl.graph_component import GraphComponent

from ganops.pipeline.components import make_components
from ganops.pipeline.placement import (
    DEFAULT_PLACEMENT,
    Placement,
    node_pods,
    place_light,
    place_on_gpus,
)
from ganops.pipeline.ports import RunParams

PIPELINE_NAME = "ganops-ct"
# The task names that make up each step of PIPELINE_STEPS (KFP names tasks after components).
STEP_TASKS: dict[str, str] = {
    "ingest": "ingest",
    "validate": "validate",
    "train": "train",
    "evaluate": "evaluate",
    "register": "register",
    "gate-pass": "gate",
    "gate-reject": "gate",
    "finalize": "finalize",
}
_D = RunParams()


def build_pipeline(image: str, placement: Placement = DEFAULT_PLACEMENT) -> GraphComponent:
    """The CT pipeline on `image` (the trainer image); the steps that load no network on
    `placement.steps_image` when set."""
    c = make_components(image, placement.steps_image)

    @dsl.pipeline(name=PIPELINE_NAME, description="Continuous training of the ganops GAN")
    def ct_pipeline(
        model: str = _D.model,
        data: str = _D.data,
        epochs: int = 0,  # 0: the preset's
        steps: int = 0,  # 0: train for `epochs`
        lr: float = 0.0,  # 0: the preset's
        batch_size: int = 0,  # 0: the preset's
        gpus: int = _D.gpus,
        nodes: int = _D.nodes,  # > 1: a Kubeflow Trainer TrainJob on that many nodes
        image_size: int = 0,  # 0: the preset's size
        preset: str = "",  # "": tiny without GPUs, full with them
        seed: int = _D.seed,
        auto_deploy: bool = _D.auto_deploy,
        min_score: float = _D.min_score,
        synthetic_n: int = 0,  # 0: the synthetic generator's default size
        captured: str = "",  # a drift retrain's captured inputs (pipeline.captured)
        mlflow_uri: str = "",
        events_dir: str = "",  # local runs only: where steps append progress events
        run_id: str = "",  # local runs only: the launcher's run id (KFP uses its own)
        artifact_uri: str = "",  # GANOPS_ARTIFACT_URI: durable checkpoints ("": none)
        request_id: str = "",  # the durable key ("": the KFP run id)
        checkpoint_minutes: float = 10.0,  # GANOPS_CHECKPOINT_MINUTES
        data_allow: str = "[]",  # GANOPS_DATA_ALLOW as a JSON list: checked again at fetch time
        data_anywhere: bool = False,  # an approver's run: data need not lie under data_allow
        device_data_gb: float = -1.0,  # GANOPS_DEVICE_DATA_GB (< 0: the train pod's env)
    ) -> None:
        job_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
        size: dict[str, Any] = {"image_size": image_size, "preset": preset, "gpus": gpus}
        final = c.finalize(
            model_name=model,
            auto_deploy=auto_deploy,
            image=image,
            mlflow_uri=mlflow_uri,
            run_id=run_id,
            job_id=job_id,
            events_dir=events_dir,
        )
        with dsl.ExitHandler(final, name="ct"):
            ing = c.ingest(
                source=data,
                seed=seed,
                synthetic_n=synthetic_n,
                captured=captured,
                events_dir=events_dir,
                data_allow=data_allow,
                data_anywhere=data_anywhere,
                **size,
            )
            dataset = ing.outputs["dataset"]
            val = c.validate(dataset=dataset, events_dir=events_dir, **size)
            tr = c.train(
                dataset=dataset,
                data_digest=ing.outputs["Output"],
                model_name=model,
                data=data,
                epochs=epochs,
                steps=steps,
                lr=lr,
                batch_size=batch_size,
                nodes=nodes,
                seed=seed,
                auto_deploy=auto_deploy,
                min_score=min_score,
                synthetic_n=synthetic_n,
                captured=captured,
                mlflow_uri=mlflow_uri,
                events_dir=events_dir,
                run_id=run_id,
                job_id=job_id,
                image=image,
                artifact_uri=artifact_uri,
                request_id=request_id,
                checkpoint_minutes=checkpoint_minutes,
                device_data_gb=device_data_gb,
                node_pods=node_pods(placement),
                **size,
            ).after(val)
            ev = c.evaluate(
                dataset=dataset,
                model=tr.outputs["model"],
                model_name=model,
                min_score=min_score,
                mlflow_uri=mlflow_uri,
                mlflow_run_id=tr.outputs["Output"],
                events_dir=events_dir,
            )
            reg = c.register(
                model=tr.outputs["model"],
                model_name=model,
                mlflow_uri=mlflow_uri,
                mlflow_run_id=tr.outputs["Output"],
                champion_version=ev.outputs["champion_version"],
                scores=ev.outputs["scores"],
                run_id=run_id,
                job_id=job_id,
                events_dir=events_dir,
            )
            gate: dict[str, Any] = {
                "version": reg.output,
                "model_name": model,
                "deploy_score": ev.outputs["deploy_score"],
                "gate_bar": ev.outputs["gate_bar"],
                "scores": ev.outputs["scores"],
                "mlflow_uri": mlflow_uri,
                "events_dir": events_dir,
            }
            with dsl.If(ev.outputs["deploy_score"] > ev.outputs["gate_bar"], name="gate-passed"):
                passed = c.gate_pass(auto_deploy=auto_deploy, **gate)
            with dsl.Else(name="gate-failed"):
                rejected = c.gate_reject(**gate)
        place_on_gpus(tr, gpus, placement)
        for task in (final, ing, val, ev, reg, passed, rejected):
            place_light(task, placement)
        for task in (final, ing, val, tr, ev, reg, passed, rejected):
            _no_cache(task)

    return ct_pipeline


def compile_pipeline(
    path: str | Path, image: str, placement: Placement = DEFAULT_PLACEMENT
) -> Path:
    """Write the pipeline YAML for `image` to `path` and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image, placement), package_path=str(out))
    return out


def _no_cache(task: PipelineTask) -> None:
    # Every step reads or writes MLflow state: a cached result would skip real work.
    task.set_caching_options(enable_caching=False)
