"""What a train step keeps under the request's durable folder (`GANOPS_ARTIFACT_URI`).

On Kubeflow a retried pod starts with empty output folders, so the MLflow run id (and the
checkpoints, see model/train.py) live at `<artifact_uri>/<request id>/` as well: the retry
continues the same MLflow run. Also the link of the run to the data snapshot it read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MLFLOW_RUN_FILE = "mlflow_run.json"


def durable_dir(*, artifact_uri: str, request_id: str) -> str:
    """Where a request's checkpoints and MLflow run id outlive its pods ("" when nowhere)."""
    from ganops.model import storage

    return storage.join(artifact_uri, request_id) if artifact_uri and request_id else ""


def mlflow_run_id(out: Path, durable: str | None) -> str | None:
    """The MLflow run an earlier attempt of this request opened: local, else durable."""
    from ganops.model import storage

    local = read_json(out / MLFLOW_RUN_FILE).get("run_id")
    if local or not durable:
        return str(local) if local else None
    text = storage.read_text(f"{durable}/{MLFLOW_RUN_FILE}")
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return None
    return str(data["run_id"]) if isinstance(data, dict) and data.get("run_id") else None


def log_data_input(mlflow_uri: str, run_id: str, data_dir: Path) -> None:
    from ganops.pipeline.steps import snapshot

    snap = snapshot.read(data_dir)
    if snap is not None:
        snapshot.log_snapshot(mlflow_uri=mlflow_uri, run_id=run_id, snap=snap)


def save_mlflow_run_id(out: Path, durable: str | None, run_id: str) -> None:
    from ganops.model import storage

    text = json.dumps({"run_id": run_id})
    (out / MLFLOW_RUN_FILE).write_text(text)
    if durable:
        scratch = out / f".{MLFLOW_RUN_FILE}.upload"
        storage.write_text(f"{durable}/{MLFLOW_RUN_FILE}", text, scratch=scratch)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or {} when it is missing or not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def prune_requests(artifact_uri: str, *, keep_days: float, now: float | None = None) -> list[str]:
    """Delete each request folder under `artifact_uri` in which nothing was written for
    `keep_days` (a running request writes a checkpoint every few minutes, so it stays);
    returns the request keys deleted."""
    import time

    from ganops.model import storage

    cutoff = (time.time() if now is None else now) - keep_days * 86400
    old = sorted(k for k, t in storage.folder_ages(artifact_uri).items() if t < cutoff)
    for key in old:
        storage.remove_tree(f"{artifact_uri.rstrip('/')}/{key}")
    return old
