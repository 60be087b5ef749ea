"""`ganops pipeline`: usage errors exit 2 without a traceback; status and list read the store."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ganops.pipeline.cli import follow, format_status, main, progress_line
from ganops.pipeline.ports import LaunchResult, RunParams, RunState, RunStatus


@pytest.fixture(autouse=True)
def _env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_mlflow: Callable[[Path], str]
) -> None:
    monkeypatch.setenv("GANOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("KFP_HOST", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_mlflow(tmp_path / "mlflow.db"))


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["run", "epochs=three"], "epochs='three' is not an integer"),
        (["run", "epochz=3"], "unknown parameter 'epochz'"),
        (["run", "lr"], "expected key=value, got 'lr'"),
        (["run", "gpus=-2"], "gpus=-2 is out of range"),
        (["run", "data=/no/such/folder"], "no such folder"),
    ],
)
def test_bad_run_parameters_print_usage_and_exit_2(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert problem in err
    assert "usage: ganops pipeline" in err
    assert "Traceback" not in err
    assert not (tmp_path / "state" / "runs").exists()  # nothing was launched


def test_unknown_option_is_an_argparse_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--epochs", "3"])
    assert exit_.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_status_of_an_unknown_run_and_an_empty_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "local-nope"]) == 1
    assert "no local run 'local-nope'" in capsys.readouterr().err
    assert main(["list"]) == 0
    assert capsys.readouterr().out == ""


def test_progress_line_shows_step_training_and_losses() -> None:
    st = RunStatus(
        run_id="r1",
        state="running",
        current_step="train",
        steps_done=2,
        train_step=40,
        train_total=100,
        losses={"G": 1.25, "D": 0.5},
    )
    line = progress_line(st, 12.3)
    assert line == "[r1] running stage 3/6 train step 40/100 (40%) | G=1.250 D=0.500 12s"
    timed = progress_line(dataclasses.replace(st, train_rate=0.5), 12.3)  # 60 left at 0.5/s
    assert timed.startswith("[r1] running stage 3/6 train step 40/100 (40%) · ETA 2 min | ")
    done = RunStatus(run_id="r1", state="gated", steps_done=6)
    assert progress_line(done, 60).startswith("[r1] gated 6/6 stages done")
    failed = RunStatus(run_id="r2", state="failed", failed_step="validate", error="bad: a.png")
    assert "failed at validate: bad: a.png" in format_status(failed, final_details=True)


class _Scripted:
    """Statuses in a fixed order: the follow loop's rendering, without a real run."""

    def __init__(self, statuses: list[RunStatus]) -> None:
        self.statuses = iter(statuses)

    def launch(self, params: RunParams, request_id: str) -> LaunchResult:
        raise NotImplementedError

    def status(self, run_id: str) -> RunStatus:
        return next(self.statuses)

    def cancel(self, run_id: str) -> None:
        raise NotImplementedError

    def list_runs(self, limit: int = 20) -> list[RunStatus]:
        raise NotImplementedError


def test_follow_prints_a_line_per_change_until_final() -> None:
    def st(state: RunState, step: str | None, done: int, train: int | None = None) -> RunStatus:
        return RunStatus(
            run_id="r",
            state=state,
            current_step=step,
            steps_done=done,
            train_step=train,
            train_total=10 if train else None,
        )

    script = [
        st("queued", None, 0),
        st("running", "ingest", 0),
        st("running", "train", 2, 3),
        st("running", "train", 2, 3),
        st("gated", None, 6),
    ]
    out = io.StringIO()
    final = follow(_Scripted(script), "r", out, poll=0)
    assert final.state == "gated"
    lines = out.getvalue().splitlines()
    assert [line.split(" | ")[0] for line in lines] == [
        "[r] queued 0/6 stages done",
        "[r] running stage 1/6 ingest",
        "[r] running stage 3/6 train step 3/10 (30%)",
        "[r] gated 6/6 stages done",
    ]


def test_the_launchers_import_neither_torch_nor_mlflow() -> None:
    # The bot imports these; its image has no torch, and MLflow loads only when needed. Of
    # model/ only the torch-free registry names and config may load.
    code = (
        "import sys, ganops.pipeline.launch.local, ganops.pipeline.launch.kubeflow, ganops.pipeline.cli, ganops.pipeline.params; "
        "allowed = {'ganops.model', 'ganops.model.registry', 'ganops.model.config'}; "
        "print(sorted(m for m in sys.modules if m in ('torch', 'mlflow') "
        "or (m.startswith('ganops.model') and m not in allowed)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_ganops_pipeline_reads_the_cluster_settings_the_bot_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ganops.bot.cli import main as ganops
    from tests.fakes.kfp import serve_fake_kfp

    token = tmp_path / "token"
    token.write_text("projected-sa-token")
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = {
        "GANOPS_KFP_NAMESPACE": "team-a",
        "KF_PIPELINES_SA_TOKEN_PATH": str(token),
        "GANOPS_ARTIFACT_URI": "s3://ganops-bucket/ckpt",
        "GANOPS_DATA_SECRET": "s3-credentials",
        "GANOPS_GPU_NODE_SELECTOR": "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3",
        "GANOPS_IMAGE": "registry.example/ganops-trainer:2.0.1",
        "GANOPS_DEVICE_DATA_GB": "0.25",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    with serve_fake_kfp() as (host, fake):
        monkeypatch.setenv("KFP_HOST", host)
        assert ganops(["pipeline", "run", "gpus=1", "--no-follow", "--request-id", "cli-1"]) == 0
        assert ganops(["pipeline", "list"]) == 0
        [run] = fake.runs.values()
        assert ganops(["pipeline", "cancel", run["run_id"]]) == 0
    assert set(fake.auth) == {"Bearer projected-sa-token"}
    assert set(fake.namespaces) == {"team-a"}
    assert run["runtime_config"]["parameters"]["artifact_uri"] == "s3://ganops-bucket/ckpt"
    spec, platform = run["pipeline_spec"]["pipeline_spec"], run["pipeline_spec"]["platform_spec"]
    # The budget is a run argument, bound to the train task's input of the same name.
    assert run["runtime_config"]["parameters"]["device_data_gb"] == 0.25
    train_inputs = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]["train"]["inputs"]
    assert train_inputs["parameters"]["device_data_gb"] == {
        "componentInputParameter": "pipelinechannel--device_data_gb"
    }
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {settings["GANOPS_IMAGE"]}
    train = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert train["nodeSelector"]["labels"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert train["secretAsEnv"][0]["secretName"] == "s3-credentials"
    assert f"cancelled {run['run_id']}" in capsys.readouterr().out


def test_ganops_pipeline_refuses_a_bad_cluster_setting_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ganops.bot.cli import main as ganops

    monkeypatch.setenv("GANOPS_DATA_SECRET", "Not_A_Name")
    assert ganops(["pipeline", "list"]) == 2
    err = capsys.readouterr().err
    assert "GANOPS_DATA_SECRET='Not_A_Name' is not a Kubernetes name" in err
    assert "Traceback" not in err
