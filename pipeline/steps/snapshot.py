"""The data snapshot a run trained on: its URI, file count and content digest.

Ingest writes it beside the data (a hidden file: no part of the digest or the layout); the
train step links it to its MLflow run as a dataset input, so the run page says exactly which
bytes from which bucket made the model, whatever the source was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SNAPSHOT_FILE = ".ganops-snapshot.json"
DATASET_NAME = "ganops-train-data"


def record(*, source: str, data_dir: Path, digest: str) -> dict[str, Any]:
    """Describe what ingest read into `data_dir` and save it there."""
    files = [
        p
        for p in data_dir.rglob("*")
        if p.is_file() and not any(s.startswith(".") for s in p.relative_to(data_dir).parts)
    ]
    snap = {"uri": source, "files": len(files), "digest": digest}
    (data_dir / SNAPSHOT_FILE).write_text(json.dumps(snap))
    return snap


def read(data_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((data_dir / SNAPSHOT_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def log_snapshot(*, mlflow_uri: str, run_id: str, snap: dict[str, Any]) -> None:
    """Link the snapshot to the run (`mlflow.log_input`'s entity, through the client)."""
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, InputTag

    uri = str(snap["uri"])
    scheme = (
        uri.split("://", 1)[0] if "://" in uri else ("synthetic" if uri == "synthetic" else "local")
    )
    dataset = Dataset(
        name=DATASET_NAME,
        # MLflow's SQL stores keep at most 36 characters of digest; the profile has it all.
        digest=str(snap["digest"]).removeprefix("sha256:")[:16],
        source_type=scheme,
        source=json.dumps({"uri": uri}),
        profile=json.dumps({"num_files": snap["files"], "digest": snap["digest"]}),
    )
    tags = [InputTag(key="mlflow.data.context", value="training")]
    MlflowClient(tracking_uri=mlflow_uri).log_inputs(run_id, [DatasetInput(dataset, tags)])
