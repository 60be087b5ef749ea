from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from ganops.model.bundle import BundleError, load_bundle, save_bundle
from ganops.model.config import preset
from ganops.model.networks import build_generator
from ganops.model.tracking import (
    NullTracker,
    RecordingTracker,
    Tracker,
    TrackingError,
    artifact_root_for,
    default_tracking_uri,
    flatten_params,
    make_tracker,
)

NET = preset("tiny", ngf=8, n_blocks=1)


def test_null_and_recording_trackers() -> None:
    null: Tracker = make_tracker(None, "x")
    assert isinstance(null, NullTracker)
    with null.start_run("r") as run:
        run.log_metrics({"loss": 1.0}, step=1)
        assert run.log_image(Image.new("RGB", (4, 4)), "a.png") is None
    assert null.run_id is None
    recorder: Tracker = RecordingTracker()
    with recorder.start_run("r") as run:
        run.log_params({"net": {"ngf": 8}, "lr": 0.1})
        run.log_metrics({"loss": 2.0}, step=1)
        run.log_metrics({"loss": 1.0}, step=2)
        run.log_text("hello", "note.txt")
    assert isinstance(recorder, RecordingTracker)
    assert recorder.params == {"net.ngf": "8", "lr": "0.1"}
    assert recorder.history("loss") == [(1, 2.0), (2, 1.0)]
    assert recorder.artifacts["note.txt"] == "hello"


def test_uris_and_param_flattening(tmp_path: Path) -> None:
    uri = default_tracking_uri(tmp_path / "state")
    assert uri == f"sqlite:///{(tmp_path / 'state').resolve()}/mlflow.db"
    expected = (tmp_path / "state").resolve() / "mlartifacts" / "gan_ops"
    assert artifact_root_for(uri, "gan ops") == str(expected)
    assert artifact_root_for("http://mlflow:5000", "x") is None
    assert flatten_params({"a": {"b": {"c": 1}}, "d": None}) == {"a.b.c": "1", "d": "None"}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    # Work from an empty folder, to prove that nothing lands in the current directory.
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return default_tracking_uri(tmp_path / "state")


@pytest.mark.slow
def test_mlflow_run_holds_everything_and_the_registered_model_loads(
    store: str, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    from ganops.model.tracking import MlflowTracker

    tracker = MlflowTracker(store, "ganops-test")
    typed: Tracker = tracker  # MlflowTracker satisfies the protocol (checked by mypy)
    assert typed is tracker
    generator = build_generator(NET, generator=torch.Generator().manual_seed(0))
    bundle_dir = save_bundle(tmp_path / "bundle", generator, NET, {"data_digest": "sha256:d"})
    with tracker.start_run("train", tags={"kind": "test"}):
        tracker.log_params({"net": NET.to_dict(), "lr": 2e-4})
        for step in (10, 20):
            tracker.log_metrics({"loss_G": 1.0 / step}, step=step)
        grid_uri = tracker.log_image(Image.new("RGB", (64, 32), (200, 10, 10)), "sample_grid.png")
        tracker.log_text("# report", "report.md")
        tracker.log_dict({"deploy_score": 0.5}, "metrics.json")
        tracker.set_tags({"data_digest": "sha256:d"})
        version = tracker.log_bundle(bundle_dir, generator, "ganops-test")
    run_id = tracker.run_id
    assert run_id is not None
    assert grid_uri == f"runs:/{run_id}/sample_grid.png"
    assert version == "1"

    client = MlflowClient(store)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.0002"
    assert run.data.params["net.ngf"] == "8"
    assert run.data.tags["kind"] == "test"
    assert run.data.tags["data_digest"] == "sha256:d"
    history = client.get_metric_history(run_id, "loss_G")
    assert [(m.step, m.value) for m in history] == [(10, 0.1), (20, 0.05)]
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"sample_grid.png", "report.md", "metrics.json"} <= names
    assert list(Path.cwd().iterdir()) == []
    assert (tmp_path / "state" / "mlartifacts" / "ganops-test").is_dir()

    client.set_registered_model_alias("ganops-test", "challenger", "1")
    bundle = load_bundle("models:/ganops-test@challenger", tracking_uri=store)
    assert bundle.version == "1"
    assert bundle.meta["data_digest"] == "sha256:d"
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(bundle.generator(x), generator.eval()(x))
    assert load_bundle("models:/ganops-test/1", tracking_uri=store).net == NET
    with pytest.raises(BundleError, match="cannot load models:/ganops-test@champion"):
        load_bundle("models:/ganops-test@champion", tracking_uri=store)


@pytest.mark.slow
def test_mlflow_failures_resume_and_misuse(store: str) -> None:
    from mlflow import MlflowClient

    from ganops.model.tracking import MlflowTracker

    tracker = MlflowTracker(store, "ganops-test")
    with pytest.raises(TrackingError, match="no active MLflow run"):
        tracker.log_metrics({"x": 1.0})
    with pytest.raises(RuntimeError, match="boom"), tracker.start_run("crash"):
        tracker.log_metrics({"x": 1.0}, step=1)
        raise RuntimeError("boom")
    crashed = tracker.run_id
    assert crashed is not None
    client = MlflowClient(store)
    assert client.get_run(crashed).info.status == "FAILED"
    # Resuming reopens the same run; its experiment is found again, not duplicated.
    with MlflowTracker(store, "ganops-test").start_run(run_id=crashed) as resumed:
        resumed.log_metrics({"x": 2.0}, step=2)
        assert resumed.run_id == crashed
    assert [m.value for m in client.get_metric_history(crashed, "x")] == [1.0, 2.0]
    assert client.get_run(crashed).info.status == "FINISHED"
    with tracker.start_run("nothing"), pytest.raises(TrackingError, match="no bundle files"):
        tracker.log_bundle(Path(store.removeprefix("sqlite:///")).parent, torch.nn.Identity(), None)
