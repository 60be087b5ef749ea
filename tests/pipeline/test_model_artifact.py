"""The train step's Model artifact holds the bundle and nothing else: the checkpoints, the
MLflow run id and the torchrun job files stay in the durable store (GANOPS_ARTIFACT_URI) or,
without one, in the trainer's own folder beside the artifact, which KFP never uploads."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganops.model.bundle import BUNDLE_FILES
from ganops.model.checkpoint import load_checkpoint
from ganops.pipeline.events import fold, read_events
from ganops.pipeline.ports import RunParams
from ganops.pipeline.steps.train import run_train_step, training_dir

pytestmark = pytest.mark.slow  # two short real training runs (~10 s)

PARAMS = RunParams(steps=2, batch_size=2, preset="tiny", image_size=32)


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def train(tmp_path: Path, *, artifact_uri: str = "") -> Path:
    from ganops.model.data import make_synthetic

    data = make_synthetic(tmp_path / "data", n_train=24, n_test=2, image_size=32)
    model_dir = tmp_path / "task" / "model"
    run_train_step(params=PARAMS, data_dir=str(data), model_dir=str(model_dir),
                   loss_curve_path=str(tmp_path / "curve" / "loss_curve.png"), data_digest="sha256:d",
                   mlflow_uri="", events_dir=str(tmp_path / "events"), kfp_run_id="run-1", image="img:1",
                   artifact_uri=artifact_uri, request_id="req-1")  # fmt: skip
    return model_dir


def test_with_a_durable_store_the_artifact_holds_only_the_bundle(tmp_path: Path) -> None:
    store = tmp_path / "bucket"
    model_dir = train(tmp_path, artifact_uri=str(store))
    assert files(model_dir) == {f"bundle/{name}" for name in BUNDLE_FILES}
    # The checkpoint lives in the store, at the last step, and nowhere else.
    assert int(load_checkpoint(store / "req-1" / "checkpoints" / "last.pt")["step"]) == 2
    assert not training_dir(str(model_dir)).exists()
    assert not [p for p in (tmp_path / "task").rglob("*.pt") if p.name != "generator.pt"]


def test_without_a_store_the_checkpoint_stays_beside_the_artifact_and_a_retry_resumes(
    tmp_path: Path,
) -> None:
    model_dir = train(tmp_path)
    assert files(model_dir) == {f"bundle/{name}" for name in BUNDLE_FILES}
    work = training_dir(str(model_dir))
    assert work.parent == model_dir.parent
    assert work != model_dir
    assert (work / "checkpoints" / "last.pt").is_file()

    train(tmp_path)  # a retried task in the same folders
    assert fold(read_events(tmp_path / "events")).facts["train"]["resumed"] is True
    assert files(model_dir) == {f"bundle/{name}" for name in BUNDLE_FILES}
