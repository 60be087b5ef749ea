"""How a finished run is summarised: its final state and its `RunResult`.

Two sources feed the same shapes: the facts that local steps put in their events, and the
tags the register and gate steps put on the MLflow model version (what a Kubeflow run leaves
behind). No torch, kfp or mlflow imports here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from ganops.model.registry import TRAIN_NOTE_TAG, model_of
from ganops.pipeline.ports import RunResult

# Tags of a model version that are JSON documents rather than plain strings.
JSON_TAGS = ("scores", "params")


def final_state(succeeded: bool, gate: Mapping[str, Any] | None) -> str:
    """The run's state from the body's outcome and the gate step's facts."""
    if not succeeded:
        return "failed"
    if not gate or gate.get("gate_passed") is None:
        return "failed"  # the body "succeeded" without reaching a gate: treat as broken
    if not gate["gate_passed"]:
        return "gated"
    return "deployed" if gate.get("deployed") else "awaiting_approval"


def result_from_facts(
    facts: Mapping[str, Mapping[str, Any]], model: str, image: str
) -> dict[str, Any]:
    """A RunResult-shaped dict from the steps' `finished` facts (local runs)."""
    ingest, train = facts.get("ingest", {}), facts.get("train", {})
    ev, reg, gate = facts.get("evaluate", {}), facts.get("register", {}), facts.get("gate", {})
    artifacts = {
        k: v
        for k, v in (
            ("sample_grid", ev.get("sample_grid")),
            ("loss_curve", train.get("loss_curve")),
        )
        if v
    }
    return {
        "model": model,
        "registered_model": reg.get("registered_model"),
        "version": reg.get("version"),
        "metrics": dict(ev.get("metrics") or {}),
        "champion_metrics": ev.get("champion_metrics"),
        "champion_version": ev.get("champion_version") or None,
        "deploy_score": ev.get("deploy_score"),
        "gate_passed": gate.get("gate_passed"),
        "gate_reason": gate.get("gate_reason"),
        "data_digest": ingest.get("data_digest"),
        "image": image or None,
        "artifacts": artifacts,
        "mlflow_run_id": train.get("mlflow_run_id"),
        "train_note": " ".join(train.get("notes") or []) or None,
    }


def result_from_version(
    name: str, version: str, run_id: str | None, tags: Mapping[str, str]
) -> dict[str, Any]:
    """A RunResult-shaped dict from a model version's tags (Kubeflow runs)."""
    scores = _json(tags.get("scores"))
    passed = tags.get("gate_passed")
    artifacts = {k: tags[k] for k in ("sample_grid", "loss_curve") if tags.get(k)}
    return {
        "model": model_of(name),
        "registered_model": name,
        "version": version,
        "metrics": dict(scores.get("metrics") or {}),
        "champion_metrics": scores.get("champion_metrics"),
        "champion_version": tags.get("champion_version") or None,
        "deploy_score": _float(tags.get("deploy_score")),
        "gate_passed": None if passed is None else passed == "true",
        "gate_reason": tags.get("gate_reason"),
        "data_digest": tags.get("data_digest"),
        "image": tags.get("image"),
        "artifacts": artifacts,
        "mlflow_run_id": run_id,
        "train_note": tags.get(TRAIN_NOTE_TAG) or None,
    }


def to_run_result(data: Mapping[str, Any] | None) -> RunResult | None:
    """The frozen RunResult for a stored dict (unknown keys from newer writers are dropped)."""
    if not data:
        return None
    known = RunResult.__dataclass_fields__
    values = {k: v for k, v in data.items() if k in known}
    values.setdefault("model", "cut")
    values.setdefault("registered_model", None)
    values.setdefault("version", None)
    return RunResult(**values)


def with_links(result: RunResult | None, mlflow_ui_url: str | None) -> RunResult | None:
    """`result` with its MLflow run and model-version pages under `mlflow_ui_url`."""
    if result is None or not mlflow_ui_url:
        return result
    base = mlflow_ui_url.rstrip("/")
    run_url = f"{base}/#/runs/{result.mlflow_run_id}" if result.mlflow_run_id else None
    version_url = None
    if result.registered_model and result.version:
        version_url = f"{base}/#/models/{result.registered_model}/versions/{result.version}"
    return dataclasses.replace(result, mlflow_run_url=run_url, model_version_url=version_url)


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _float(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None
