"""`ganops` exit codes and machine-readable output: no command is a usage error (2), a run the
gate rejected exits 3 (a failure 1, success 0), `--json` prints exactly one JSON document on
stdout, and `--help` documents the codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ganops.bot import cli
from ganops.pipeline import cli as pipeline_cli
from ganops.pipeline.exit_codes import EXIT_FAILED, EXIT_GATED, EXIT_OK, EXIT_USAGE
from ganops.pipeline.ports import LaunchResult, RunParams, RunResult, RunState, RunStatus

pytestmark = pytest.mark.slow  # runs the CLIs as processes


def test_no_command_prints_help_to_stderr_and_exits_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ganops.bot.cli"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == EXIT_USAGE
    assert proc.stdout == ""
    assert "usage: ganops" in proc.stderr
    assert "3 the gate rejected" in proc.stderr  # the codes are part of the help


def test_help_still_goes_to_stdout_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "exit codes: 0 done" in out
    assert "--json" in out


class Launcher:
    """The launcher port with a run that ends in `final`: what `ganops pipeline run` follows."""

    def __init__(self, final: RunState) -> None:
        self.final = final
        self.polls = 0

    def launch(self, params: RunParams, request_id: str) -> LaunchResult:
        return LaunchResult(run_id="local-7", url=None, created=True)

    def status(self, run_id: str) -> RunStatus:
        self.polls += 1
        if self.polls == 1:
            return RunStatus(run_id=run_id, state="running", current_step="train", steps_done=2,
                             train_step=40, train_total=160, train_rate=2.0)  # fmt: skip
        result = RunResult(model="cut", registered_model="ganops-cut", version="4",
                           deploy_score=0.41, gate_passed=self.final != "gated",
                           gate_reason="deploy score 0.41 is below the bar 0.5")  # fmt: skip
        return RunStatus(run_id=run_id, state=self.final, steps_done=6, result=result,
                         error="boom" if self.final == "failed" else None)  # fmt: skip

    def cancel(self, run_id: str) -> None:
        raise NotImplementedError

    def list_runs(self, limit: int = 20) -> list[RunStatus]:
        return [self.status("local-7"), self.status("local-7")][:limit]


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GANOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(pipeline_cli, "POLL_S", 0.0)

    def install(final: RunState) -> Launcher:
        launcher = Launcher(final)
        monkeypatch.setattr(pipeline_cli, "_launcher", lambda env: launcher)
        return launcher

    return install


@pytest.mark.parametrize(
    ("final", "code"),
    [
        ("awaiting_approval", EXIT_OK),
        ("deployed", EXIT_OK),
        ("gated", EXIT_GATED),
        ("failed", EXIT_FAILED),
        ("cancelled", EXIT_FAILED),
    ],
)
def test_pipeline_run_exit_codes(
    final: RunState,
    code: int,
    use,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    use(final)
    assert pipeline_cli.main(["run", "steps=160"]) == code
    out = capsys.readouterr().out
    assert "run local-7" in out
    assert "stage 3/6 train step 40/160 (25%) · ETA 1 min" in out  # the progress line's ETA


def test_pipeline_run_json_is_one_document_on_stdout(
    use, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    use("gated")
    assert pipeline_cli.main(["run", "steps=160", "--json"]) == EXIT_GATED
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # the whole of stdout parses: nothing else is there
    assert doc["state"] == "gated"
    assert doc["result"]["gate_reason"] == "deploy score 0.41 is below the bar 0.5"
    assert "run local-7" in captured.err  # what people read went to stderr
    assert "stage 3/6 train" in captured.err


def test_pipeline_status_and_list_json(use, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    use("awaiting_approval")
    assert pipeline_cli.main(["status", "local-7", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["train_rate"] == 2.0
    assert pipeline_cli.main(["list", "--limit", "1", "--json"]) == EXIT_OK
    runs = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in runs] == ["local-7"]
    assert pipeline_cli.main(["list", "--limit", "0"]) == EXIT_USAGE
    assert "--limit must be > 0" in capsys.readouterr().err


def test_run_help_documents_the_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        pipeline_cli.main(["run", "--help"])
    out = capsys.readouterr().out
    assert "3 the gate rejected the challenger" in out
    assert "1 failed" in out


def test_the_model_cli_restates_the_same_gate_code() -> None:
    from ganops.model.cli.args import EXIT_GATED as MODEL_EXIT_GATED

    assert MODEL_EXIT_GATED == EXIT_GATED
