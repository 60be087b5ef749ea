"""The exit-handler step: decide how the run ended and record it where the bot reads it.

Local runs: the steps' events hold every fact; the record goes back into the events file as a
`final` event (the local worker copies it into `pipeline_runs`). Kubeflow runs: the model
version's tags hold the facts; the record goes onto the version as `pipeline_state`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ganops.model.registry import registered_name
from ganops.pipeline.events import emit, fold, read_events
from ganops.pipeline.results import final_state, result_from_facts, result_from_version

# The body's final status as the backend words it: KFP's API says SUCCEEDED, ML Metadata's
# execution state (what some backends pass to the exit handler) says COMPLETE.
SUCCEEDED_STATES = frozenset({"SUCCEEDED", "COMPLETE"})


def run_finalize_step(
    *,
    kfp_state: str,
    error_message: str,
    model: str,
    auto_deploy: bool,
    image: str,
    mlflow_uri: str,
    run_id: str,
    events_dir: str,
    summary_path: str,
) -> str:
    """Returns the record as JSON: {state, failed_step, error, result}."""
    succeeded = kfp_state.upper() in SUCCEEDED_STATES
    if events_dir:
        record = record_from_events(succeeded, error_message, model, image, events_dir)
    else:
        record = _record_from_registry(succeeded, error_message, model, mlflow_uri, run_id)
    _tag_version(record, mlflow_uri)
    emit(events_dir, "finalize", "final", **record)
    Path(summary_path).parent.mkdir(parents=True, exist_ok=True)
    Path(summary_path).write_text(_markdown(run_id, record))
    print(f"finalize: {record['state']}", record.get("error") or "", flush=True)
    return json.dumps(record, default=str)


def record_from_events(
    succeeded: bool, error_message: str, model: str, image: str, events_dir: str
) -> dict[str, Any]:
    progress = fold(read_events(events_dir))
    state = final_state(succeeded, progress.facts.get("gate"))
    record: dict[str, Any] = {
        "state": state,
        "failed_step": None,
        "error": None,
        "result": result_from_facts(progress.facts, model, image),
    }
    if state == "failed":
        step = progress.failed_step or progress.current_step
        record["failed_step"] = step
        record["error"] = progress.error or error_message or _no_message(step)
    return record


def _record_from_registry(
    succeeded: bool, error_message: str, model: str, mlflow_uri: str, run_id: str
) -> dict[str, Any]:
    found = _find_version(mlflow_uri, model, run_id)
    result = result_from_version(*found) if found else None
    gate = None
    if found:
        tags = found[3]
        gate = {
            "gate_passed": result and result["gate_passed"],
            "deployed": tags.get("decision") == "auto_deploy",
        }
    state = final_state(succeeded, gate)
    error = None
    if state == "failed":
        error = error_message or "a step failed; see the run's task details"
    return {"state": state, "failed_step": None, "error": error, "result": result}


def _find_version(
    mlflow_uri: str, model: str, run_id: str
) -> tuple[str, str, str | None, dict[str, str]] | None:
    if not mlflow_uri or not run_id:
        return None
    from ganops.pipeline.steps.registry import client_for

    name = registered_name(model)
    found = client_for(mlflow_uri).search_model_versions(
        f"name = '{name}' and tags.kfp_run_id = '{run_id}'"
    )
    if not found:
        return None
    mv = max(found, key=lambda v: int(v.version))
    return name, str(mv.version), mv.run_id, dict(mv.tags)


def _tag_version(record: dict[str, Any], mlflow_uri: str) -> None:
    result = record.get("result") or {}
    if not (mlflow_uri and result.get("version") and result.get("registered_model")):
        return
    from ganops.pipeline.steps.registry import client_for

    client_for(mlflow_uri).set_model_version_tag(
        result["registered_model"], result["version"], "pipeline_state", record["state"]
    )


def _no_message(step: str | None) -> str:
    return f"step {step} failed without a message" if step else "the run stopped before any step"


def _markdown(run_id: str, record: dict[str, Any]) -> str:
    result = record.get("result") or {}
    lines = [f"## Run {run_id}: {record['state']}", ""]
    if record.get("failed_step"):
        lines.append(f"Failed at **{record['failed_step']}**: {record.get('error')}")
    elif record.get("error"):
        lines.append(f"Error: {record['error']}")
    if result.get("gate_reason"):
        lines.append(f"Gate: {result['gate_reason']}")
    if result.get("version"):
        lines.append(f"Model: {result['registered_model']} version {result['version']}")
    return "\n".join(lines) + "\n"
