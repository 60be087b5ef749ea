"""The gate and finalize steps against a real MLflow registry (sqlite), without training:
the verdict tags, auto_deploy's alias moves, and the Kubeflow-side result read back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ganops.pipeline.events import fold, read_events
from ganops.pipeline.launch.kfp_status import MlflowFacts
from ganops.pipeline.launch.kubeflow import KubeflowLauncher
from ganops.pipeline.ports import RunParams
from ganops.pipeline.steps.finish import run_finalize_step
from ganops.pipeline.steps.registry import client_for, run_gate_step
from tests.fakes.kfp import serve_fake_kfp

pytestmark = pytest.mark.slow
NAME = "ganops-cut"


@pytest.fixture
def registry(tmp_path: Path, fresh_mlflow: Callable[[Path], str]) -> str:
    """A registry with version 1 as champion and version 2 as the new challenger."""
    uri = fresh_mlflow(tmp_path / "mlflow.db")  # the session's migrated store, copied
    client = client_for(uri)
    client.create_registered_model(NAME)
    for _ in range(2):
        client.create_model_version(NAME, source=(tmp_path / "model").as_uri())
    client.set_registered_model_alias(NAME, "champion", "1")
    client.set_registered_model_alias(NAME, "challenger", "2")
    return uri


def _scores(champion_score: float) -> str:
    return json.dumps(
        {
            "bar_kind": "champion",
            "champion_version": "1",
            "champion_score": champion_score,
            "metrics": {"ssim": 0.5},
        }
    )


def test_a_rejected_challenger_is_tagged_and_nothing_moves(registry: str, tmp_path: Path) -> None:
    events = str(tmp_path / "events")
    state = run_gate_step(
        passed=False,
        version="2",
        model="cut",
        deploy_score=0.21,
        bar=0.35,
        scores_json=_scores(0.35),
        auto_deploy=True,
        mlflow_uri=registry,
        events_dir=events,
    )
    assert state == "gated"
    client = client_for(registry)
    tags = client.get_model_version(NAME, "2").tags
    assert tags["gate_passed"] == "false"
    assert "0.2100 does not beat the bar" in tags["gate_reason"]
    assert "champion (version 1) scores 0.3500" in tags["gate_reason"]
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    gate = fold(read_events(events)).facts["gate"]
    assert (gate["gate_passed"], gate["deployed"]) == (False, False)


def test_auto_deploy_approves_by_policy_but_moves_no_alias(registry: str) -> None:
    state = run_gate_step(
        passed=True,
        version="2",
        model="cut",
        deploy_score=0.5,
        bar=0.35,
        scores_json=_scores(0.35),
        auto_deploy=True,
        mlflow_uri=registry,
        events_dir="",
    )
    assert state == "deployed"
    client = client_for(registry)
    # Only a successful rollout (the bot's deployer) moves champion; the gate does not.
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    tags = client.get_model_version(NAME, "2").tags
    assert tags["decision"] == "auto_deploy"
    assert "approved_by" not in tags  # the bot records who approved, once someone has


def test_kubeflow_runs_read_their_result_from_the_model_version(
    registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    client = client_for(registry)
    with serve_fake_kfp() as (host, fake):
        launcher = KubeflowLauncher(tmp_path / "state", host, registry, "img:1")
        run_id = launcher.launch(RunParams(), "r").run_id
        for key, value in {
            "kfp_run_id": run_id,
            "deploy_score": "0.5",
            "scores": _scores(0.35),
            "champion_version": "1",
            "data_digest": "sha256:ab",
        }.items():
            client.set_model_version_tag(NAME, "2", key, value)
        run_gate_step(
            passed=True,
            version="2",
            model="cut",
            deploy_score=0.5,
            bar=0.35,
            scores_json=_scores(0.35),
            auto_deploy=False,
            mlflow_uri=registry,
            events_dir="",
        )
        # The exit handler on Kubeflow (no events dir) finds the version by the run id.
        summary = tmp_path / "summary.md"
        record = json.loads(
            run_finalize_step(
                kfp_state="SUCCEEDED",
                error_message="",
                model="cut",
                auto_deploy=False,
                image="img:1",
                mlflow_uri=registry,
                run_id=run_id,
                events_dir="",
                summary_path=str(summary),
            )
        )
        assert record["state"] == "awaiting_approval"
        assert client.get_model_version(NAME, "2").tags["pipeline_state"] == "awaiting_approval"
        assert "awaiting_approval" in summary.read_text()
        steps = dict.fromkeys(("ingest", "validate", "train", "evaluate", "register"), "SUCCEEDED")
        fake.set_tasks(run_id, {**steps, "gate-pass": "SUCCEEDED", "finalize": "SUCCEEDED"})
        fake.set_state(run_id, "SUCCEEDED")
        st = launcher.status(run_id)
    assert st.state == "awaiting_approval"
    assert st.result is not None
    assert (st.result.version, st.result.champion_version) == ("2", "1")
    assert (st.result.deploy_score, st.result.gate_passed) == (0.5, True)
    assert st.result.metrics == {"ssim": 0.5}
    assert MlflowFacts(registry).result("cut", "no-such-run") is None


def test_kubeflow_train_progress_comes_from_the_train_runs_metrics(
    registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    client = client_for(registry)
    with serve_fake_kfp() as (host, fake):
        launcher = KubeflowLauncher(tmp_path / "state", host, registry, "img:1")
        run_id = launcher.launch(RunParams(), "r").run_id
        experiment = client.create_experiment(NAME)
        train_run = client.create_run(experiment, tags={"kfp_run_id": run_id, "train_total": "50"})
        fake.set_state(run_id, "RUNNING")
        fake.set_tasks(run_id, {"ingest": "SUCCEEDED", "validate": "SUCCEEDED", "train": "RUNNING"})
        t0 = 1_700_000_000_000  # ms, as MLflow stores a metric's timestamp
        client.log_metric(train_run.info.run_id, "progress_step", 10, timestamp=t0, step=10)
        assert launcher.status(run_id).train_rate is None  # one report: no rate, no ETA
        for step in (10, 20):
            client.log_metric(train_run.info.run_id, "loss_G", 1.0 / step, step=step)
        client.log_metric(train_run.info.run_id, "progress_step", 20, timestamp=t0 + 5000, step=20)
        st = launcher.status(run_id)
    assert (st.current_step, st.train_step, st.train_total) == ("train", 20, 50)
    assert st.train_rate == 2.0  # 10 steps in 5 s, from MLflow's own timestamps
    assert st.losses == {"G": 0.05}  # the same keys as local runs report
