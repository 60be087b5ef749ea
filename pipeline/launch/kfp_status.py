"""Reading a Kubeflow run: KFP v2beta1 run state and task details -> `RunStatus` fields.

Pure functions over the kfp_server_api objects (attribute access only), plus the MLflow
look-ups that complete a run's picture: training progress from the train step's MLflow run
and the result from the model version the run registered (tag `kfp_run_id`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ganops.model.registry import registered_name
from ganops.pipeline.ct_pipeline import STEP_TASKS
from ganops.pipeline.ports import PIPELINE_STEPS
from ganops.pipeline.progress import step_rate
from ganops.pipeline.results import final_state, result_from_version

log = logging.getLogger(__name__)

# KFP v2beta1 RuntimeState -> our state, for runs that are not yet final.
_GOING = {
    "PENDING": "queued",
    "RUNTIME_STATE_UNSPECIFIED": "queued",
    "RUNNING": "running",
    "PAUSED": "running",
    "CANCELING": "running",
}
_STOPPED = {"CANCELED": "cancelled", "SKIPPED": "cancelled"}


@dataclass
class TaskView:
    """What the task details say about the pipeline's steps."""

    done: set[str] = field(default_factory=set)
    current_step: str | None = None
    failed_step: str | None = None
    error: str | None = None
    gate_task: str | None = None  # "gate-pass" or "gate-reject", whichever succeeded


def task_view(run: Any) -> TaskView:
    view = TaskView()
    details = getattr(run, "run_details", None)
    tasks = list(getattr(details, "task_details", None) or [])
    tasks.sort(key=lambda t: _ts(getattr(t, "start_time", None)) or 0.0)
    for task in tasks:
        name = str(getattr(task, "display_name", "") or "")
        step = STEP_TASKS.get(name)
        state = str(getattr(task, "state", "") or "")
        if step is None:
            continue
        if state == "SUCCEEDED":
            view.done.add(step)
            if step == "gate":
                view.gate_task = name
        elif state == "RUNNING":
            view.current_step = step
        elif state == "FAILED" and view.failed_step is None:
            view.failed_step = step
            view.error = _message(getattr(task, "error", None))
    return view


def base_fields(run: Any) -> dict[str, Any]:
    """State, step progress, timestamps and error of a run, as RunStatus keyword arguments."""
    kfp_state = str(getattr(run, "state", "") or "RUNTIME_STATE_UNSPECIFIED")
    view = task_view(run)
    fields: dict[str, Any] = {
        "current_step": view.current_step,
        "steps_done": sum(1 for s in PIPELINE_STEPS if s in view.done),
        "created_at": _ts(getattr(run, "created_at", None)),
        "finished_at": _ts(getattr(run, "finished_at", None)),
    }
    if kfp_state in _GOING:
        fields["state"] = _GOING[kfp_state]
        fields["finished_at"] = None
    elif kfp_state in _STOPPED:
        fields["state"] = _STOPPED[kfp_state]
    elif kfp_state == "SUCCEEDED":
        gate = None
        if view.gate_task:
            gate = {
                "gate_passed": view.gate_task == "gate-pass",
                "deployed": view.gate_task == "gate-pass" and _auto_deploy(run),
            }
        fields["state"] = final_state(True, gate)
        if fields["state"] == "failed":
            fields["error"] = "the run succeeded without a gate verdict"
    else:  # FAILED
        fields["state"] = "failed"
        fields["failed_step"] = view.failed_step or "finalize"
        fields["error"] = view.error or _message(getattr(run, "error", None)) or "the run failed"
    return fields


class MlflowFacts:
    """Best-effort MLflow reads for a Kubeflow run; failures leave the fields empty."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def _client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def train_progress(self, model: str, kfp_run_id: str) -> dict[str, Any]:
        """train_step / train_total / losses from the train step's MLflow run."""
        if not self.tracking_uri:
            return {}
        try:
            client = self._client()
            experiment = client.get_experiment_by_name(registered_name(model))
            if experiment is None:
                return {}
            runs = client.search_runs(
                [experiment.experiment_id], f"tags.kfp_run_id = '{kfp_run_id}'", max_results=1
            )
        except Exception as exc:  # MLflow down: progress is optional
            log.warning("MLflow progress for %s unavailable: %s", kfp_run_id, exc)
            return {}
        if not runs:
            return {}
        tags, metrics = runs[0].data.tags, runs[0].data.metrics
        # model.train logs "loss_<name>"; local events say "<name>": report the same keys.
        losses = {k.removeprefix("loss_"): v for k, v in metrics.items() if k.startswith("loss_")}
        total = tags.get("train_total")
        step = metrics.get("progress_step")
        return {
            "train_step": None if step is None else int(step),
            "train_total": int(total) if total and total.isdigit() else None,
            "train_rate": self._rate(client, runs[0].info.run_id) if step else None,
            "losses": losses,
        }

    @staticmethod
    def _rate(client: Any, mlflow_run_id: str) -> float | None:
        """Steps per second from the `progress_step` history's own timestamps (ms)."""
        try:
            history = client.get_metric_history(mlflow_run_id, "progress_step")
        except Exception as exc:  # the ETA is optional too
            log.warning("MLflow progress history for %s unavailable: %s", mlflow_run_id, exc)
            return None
        samples = sorted((m.timestamp / 1000, int(m.value)) for m in history)
        return step_rate(samples)

    def result(self, model: str, kfp_run_id: str) -> dict[str, Any] | None:
        """The RunResult dict of the version this run registered, or None."""
        if not self.tracking_uri:
            return None
        name = registered_name(model)
        try:
            found = self._client().search_model_versions(
                f"name = '{name}' and tags.kfp_run_id = '{kfp_run_id}'"
            )
        except Exception as exc:
            log.warning("MLflow result for %s unavailable: %s", kfp_run_id, exc)
            return None
        if not found:
            return None
        mv = max(found, key=lambda v: int(v.version))
        return result_from_version(name, str(mv.version), mv.run_id, dict(mv.tags))


def run_parameters(run: Any) -> dict[str, Any]:
    config = getattr(run, "runtime_config", None)
    return dict(getattr(config, "parameters", None) or {})


def _auto_deploy(run: Any) -> bool:
    value = run_parameters(run).get("auto_deploy")
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _message(status: Any) -> str | None:
    if status is None:
        return None
    message = getattr(status, "message", None)
    if message:
        return str(message)
    details = getattr(status, "details", None)
    return json.dumps(details, default=str) if details else None


def _ts(value: Any) -> float | None:
    if isinstance(value, datetime):
        stamp = value.timestamp()
        return stamp if stamp > 0 else None  # KFP sends 1970-01-01 for "not yet"
    return None
