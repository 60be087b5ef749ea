"""Real kfp.local runs of the whole CT pipeline through LocalLauncher's detached workers.

One good run (tiny synthetic data, a few training steps) and one run on corrupt data are
launched together and shared by the tests of this module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from ganops.model.config import EvalConfig
from ganops.pipeline import procs
from ganops.pipeline.cli import main as cli_main
from ganops.pipeline.launch.local import LocalLauncher
from ganops.pipeline.ports import ConcurrentRunError, RunParams, RunStatus

pytestmark = pytest.mark.slow

IMAGE = "ganops-trainer:test"
GOOD = RunParams(steps=10, synthetic_n=32, batch_size=2, image_size=32)
RUN_TIMEOUT_S = 480


def _uri(state: Path) -> str:
    return f"sqlite:///{state / 'mlflow.db'}"


def _launcher(state: Path) -> LocalLauncher:
    return LocalLauncher(state, _uri(state), IMAGE)


def _wait(launcher: LocalLauncher, run_ids: list[str]) -> dict[str, RunStatus]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    done: dict[str, RunStatus] = {}
    while len(done) < len(run_ids) and time.monotonic() < deadline:
        for run_id in run_ids:
            st = launcher.status(run_id)
            if st.final:
                done[run_id] = st
        time.sleep(1)
    assert len(done) == len(run_ids), f"runs not final after {RUN_TIMEOUT_S}s"
    return done


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Path:
    state = tmp_path_factory.mktemp("state")
    shutil.copyfile(mlflow_template, state / "mlflow.db")  # empty, already migrated
    return state


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ganops.model.data import make_synthetic

    root = make_synthetic(tmp_path_factory.mktemp("bad") / "set", n_train=8, n_test=2)
    (root / "trainA" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    good_png = (root / "testB" / "test_00000.png").read_bytes()
    (root / "testB" / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    return root


@pytest.fixture(scope="module")
def runs(state: Path, bad_data: Path) -> dict[str, RunStatus]:
    launcher = _launcher(state)
    good = launcher.launch(GOOD, "good")
    # An approver's run (bot.runs.start sets this): a folder outside GANOPS_DATA_ALLOW.
    bad_params = RunParams(model="cyclegan", data=str(bad_data), data_anywhere=True)
    bad = launcher.launch(bad_params, "bad")
    assert good.created
    assert bad.created
    finished = _wait(launcher, [good.run_id, bad.run_id])
    return {"good": finished[good.run_id], "bad": finished[bad.run_id]}


def test_good_run_registers_a_challenger_with_its_tags(
    runs: dict[str, RunStatus], state: Path
) -> None:
    from mlflow import MlflowClient

    st = runs["good"]
    assert st.state in {"awaiting_approval", "gated"}, (st.state, st.error)
    assert (st.steps_done, st.train_step, st.train_total) == (6, 10, 10)
    res = st.result
    assert res is not None
    assert res.gate_passed is (st.state == "awaiting_approval")
    assert res.gate_reason
    assert "untrained generator" in res.gate_reason
    client = MlflowClient(_uri(state), registry_uri=_uri(state))
    mv = client.get_model_version_by_alias("ganops-cut", "challenger")
    assert (str(mv.version), mv.run_id) == (res.version, res.mlflow_run_id)
    tags = mv.tags
    assert tags["kfp_run_id"] == st.run_id
    assert tags["data_digest"] == res.data_digest
    assert res.data_digest
    assert res.data_digest.startswith("sha256:")
    assert tags["image"] == IMAGE
    assert json.loads(tags["params"])["steps"] == 10
    assert float(tags["deploy_score"]) == pytest.approx(res.deploy_score)
    assert tags["champion_version"] == ""  # no champion yet
    assert json.loads(tags["scores"])["metrics"] == dict(res.metrics)
    assert tags["gate_passed"] == str(res.gate_passed).lower()
    assert tags["pipeline_state"] == st.state


def test_good_run_leaves_pictures(runs: dict[str, RunStatus]) -> None:
    res = runs["good"].result
    assert res is not None
    for name in ("sample_grid", "loss_curve"):
        with Image.open(res.artifacts[name]) as image:
            assert image.format == "PNG"
            assert min(image.size) > 32


def test_bad_data_fails_at_validate_naming_the_files(
    runs: dict[str, RunStatus], state: Path
) -> None:
    st = runs["bad"]
    assert (st.state, st.failed_step, st.steps_done) == ("failed", "validate", 1)
    assert st.error is not None
    assert "trainA/broken.png" in st.error
    assert "testB/truncated.png" in st.error
    [report] = (state / "runs" / st.run_id / "outputs").glob("*/validate/report")
    assert "trainA/broken.png" in report.read_text()
    log = (state / "runs" / st.run_id / "worker.log").read_text()
    assert "validate: ERROR trainA/broken.png" in log


def test_status_survives_a_new_launcher_and_the_cli(
    runs: dict[str, RunStatus],
    state: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    st = runs["good"]
    assert _launcher(state).status(st.run_id) == st
    monkeypatch.setenv("GANOPS_STATE_DIR", str(state))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _uri(state))
    monkeypatch.delenv("KFP_HOST", raising=False)
    assert cli_main(["status", st.run_id]) == 0
    out = capsys.readouterr().out
    assert st.state in out
    assert "ganops-cut version" in out
    assert cli_main(["list"]) == 0
    assert runs["bad"].run_id in capsys.readouterr().out


def test_same_request_id_from_other_processes_gives_the_same_run(
    runs: dict[str, RunStatus], state: Path
) -> None:
    code = (
        "import sys; from pathlib import Path; from ganops.pipeline.launch.local import LocalLauncher; "
        "from pipeline.ports import RunParams; "
        "l = LocalLauncher(Path(sys.argv[1]), sys.argv[2], 'x'); "
        "r = l.launch(RunParams(steps=10, synthetic_n=8, batch_size=2, image_size=32), 'good'); "
        "print(r.run_id, r.created)"
    )
    procs_ = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(state), _uri(state)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0].split() for p in procs_]
    assert outputs == [[runs["good"].run_id, "False"]] * 2


def test_concurrent_runs_are_refused_and_a_dead_worker_is_reported(
    runs: dict[str, RunStatus], state: Path
) -> None:
    launcher = _launcher(state)
    first = launcher.launch(GOOD, "busy-1")
    with pytest.raises(ConcurrentRunError) as err:
        launcher.launch(GOOD, "busy-2")
    assert err.value.run_id == first.run_id
    row = launcher.store.get(first.run_id)
    assert row is not None
    assert row.pid
    os.killpg(row.pid, signal.SIGKILL)  # the worker and its step die without a word
    deadline = time.monotonic() + 30
    while procs.alive(row.pid, row.pid_start) and time.monotonic() < deadline:
        time.sleep(0.1)
    st = launcher.status(first.run_id)
    assert st.state == "failed"
    assert st.error is not None
    assert "stopped before the run finished" in st.error
    assert "worker.log" in st.error
    # The dead run no longer blocks the model; cancelling stops the new worker's group.
    second = launcher.launch(GOOD, "busy-2")
    assert second.created
    launcher.cancel(second.run_id)
    assert launcher.status(second.run_id).state == "cancelled"
    pid = launcher.store.get(second.run_id).pid  # type: ignore[union-attr]
    assert pid is not None
    assert not procs.alive(pid, None)


def test_evaluate_compares_against_the_champion_on_the_same_inputs(
    runs: dict[str, RunStatus], state: Path, tmp_path: Path
) -> None:
    """Make the good run's version the champion, evaluate that same model as a challenger:
    both see the same fixed inputs, so the scores tie and the bar is not beaten."""
    from mlflow import MlflowClient

    from ganops.pipeline.steps.evaluate import run_evaluate_step

    st = runs["good"]
    assert st.result is not None
    assert st.result.version is not None
    client = MlflowClient(_uri(state), registry_uri=_uri(state))
    client.set_registered_model_alias("ganops-cut", "champion", st.result.version)
    [outputs] = (state / "runs" / st.run_id / "outputs").iterdir()
    out = run_evaluate_step(
        data_dir=str(outputs / "ingest" / "dataset"),
        model_dir=str(outputs / "train" / "model"),
        model="cut",
        min_score=0.0,
        mlflow_uri=_uri(state),
        mlflow_run_id=str(st.result.mlflow_run_id),
        events_dir="",
        summary_path=str(tmp_path / "summary.md"),
        grid_path=str(tmp_path / "grid" / "sample_grid.png"),
    )
    scores = json.loads(out.scores_json)
    assert (out.champion_version, scores["bar_kind"]) == (st.result.version, "champion")
    # The bar is the champion's score plus the gate's margin; the champion is this same model.
    assert out.gate_bar == pytest.approx(out.deploy_score + EvalConfig().gate_margin)
    assert scores["champion_metrics"] == pytest.approx(scores["metrics"])
    assert "| metric | challenger | champion | delta |" in (tmp_path / "summary.md").read_text()
    with Image.open(tmp_path / "grid" / "sample_grid.png") as grid:
        assert grid.format == "PNG"


def test_the_registered_version_carries_its_drift_reference(
    runs: dict[str, RunStatus], state: Path
) -> None:
    from ganops.model.bundle import load_bundle

    st = runs["good"]
    assert st.result is not None
    bundle = load_bundle(f"models:/ganops-cut/{st.result.version}", tracking_uri=_uri(state))
    reference = bundle.drift_reference
    assert reference is not None  # the server scores drift against the training inputs
    assert reference["window"] >= 8
