"""A real MLflow store on disk (sqlite + a local artifact root) holding one challenger: a
registered model version whose run has the artifacts a test gives it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ganops.model.registry import registered_name


def register_challenger(
    tracking_uri: str, root: Path, model: str, artifacts: Mapping[str, bytes]
) -> tuple[str, str]:
    """Log `artifacts` (name -> bytes) on a new run and register it; (version, run id)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    root.mkdir(parents=True, exist_ok=True)
    experiment = client.get_experiment_by_name("tests")
    exp_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment("tests", artifact_location=(root / "mlartifacts").as_uri())
    )
    run_id = client.create_run(exp_id).info.run_id
    staged = root / "staged" / run_id
    staged.mkdir(parents=True)
    for name, data in artifacts.items():
        (staged / name).write_bytes(data)
        client.log_artifact(run_id, str(staged / name))
    client.set_terminated(run_id)
    name = registered_name(model)
    if not client.search_registered_models(f"name='{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    return str(version.version), run_id
