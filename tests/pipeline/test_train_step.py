"""The train step outside KFP: DDP under torchrun (2 CPU processes on gloo) and the resume of
a retried task from the checkpoints on its artifact, in the same MLflow run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from ganops.pipeline.events import fold, read_events
from ganops.pipeline.ports import RunParams
from ganops.pipeline.steps.train import run_train_step

pytestmark = pytest.mark.slow


def test_torchrun_training_then_a_retry_resumes(
    tmp_path: Path, fresh_mlflow: Callable[[Path], str]
) -> None:
    from mlflow import MlflowClient

    from ganops.model.data import make_synthetic

    data = make_synthetic(tmp_path / "data", n_train=8, n_test=2, image_size=32)
    params = RunParams(steps=4, batch_size=2, gpus=2, preset="tiny", image_size=32)
    uri = fresh_mlflow(tmp_path / "mlflow.db")
    model_dir, events = tmp_path / "model", tmp_path / "events"
    curve = tmp_path / "curve" / "loss_curve.png"

    def train_once() -> str:
        return run_train_step(params=params, data_dir=str(data), model_dir=str(model_dir), loss_curve_path=str(curve), data_digest="sha256:d", mlflow_uri=uri,
                              events_dir=str(events), kfp_run_id="run-1", image="img:1")  # fmt: skip

    first = train_once()
    progress = fold(read_events(events))
    facts = progress.facts["train"]
    assert (facts["steps"], facts["resumed"]) == (4, False)
    assert (progress.train_step, progress.train_total) == (4, 4)
    # Only rank 0 reports: one progress line per reported step, not one per process.
    reported = [e["train_step"] for e in read_events(events) if e["event"] == "progress"]
    assert reported == sorted(set(reported))
    assert (model_dir / "bundle" / "generator.pt").is_file()
    with Image.open(curve) as image:
        assert image.format == "PNG"
    run = MlflowClient(uri).get_run(first)
    assert run.data.tags["kfp_run_id"] == "run-1"
    assert run.data.tags["loss_curve"].endswith("loss_curve.png")
    assert "loss_D" in run.data.metrics

    again = train_once()  # a retried task: same artifact folder
    assert again == first
    assert fold(read_events(events)).facts["train"]["resumed"] is True


def test_a_bad_device_data_budget_fails_the_step_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod's GANOPS_DEVICE_DATA_GB is read before anything trains or is created."""
    from ganops.pipeline.steps.job import TrainJob
    from ganops.pipeline.steps.train import TrainStepError, train_job

    monkeypatch.setenv("GANOPS_DEVICE_DATA_GB", "-3")
    job = TrainJob(RunParams().as_dict(), str(tmp_path / "data"), str(tmp_path / "out"),
                   str(tmp_path / "loss.png"), "", str(tmp_path / "events"), {})  # fmt: skip
    with pytest.raises(
        TrainStepError, match=r"^GANOPS_DEVICE_DATA_GB must be a number of GB >= 0, got '-3'$"
    ):
        train_job(job)
    assert not (tmp_path / "out").exists()
