"""The shell adapter, driven through stdin/stdout: as a subprocess with piped input, and as a
loop over lines with the whole retrain → card → approve story."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from ganops.bot.local.shell import Shell, user_id
from ganops.bot.settings import load_settings
from ganops.pipeline.ports import RunStatus
from tests.fakes.approvals import MemoryRegistry, RecordingDeployer
from tests.fakes.launcher import ScriptedLauncher, finished
from tests.fakes.slack import make_services

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_ganops_bot_with_piped_stdin_is_a_scriptable_chat(tmp_path: Path) -> None:
    script = "\n".join(
        [
            "/whoami",
            "/user bob",
            "/whoami",
            "/retrain colour=red",
            "/retrain",
            "/ganops help",
            "/nonsense",
            "1",
            "/help",
            "/quit",
            "/whoami",
        ]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GANOPS_"))}
    env |= {"GANOPS_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "ganops.bot.cli", "bot", "--user", "alice"],
        input=script,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "you are alice (U_ALICE)" in out
    assert "you are now bob (U_BOB)" in out
    assert "you are bob (U_BOB)" in out
    assert "unknown parameter 'colour'" in out
    assert "/retrain [epochs=N]" in out
    assert "In Slack this opens a form; here, type the fields" in out  # and nothing started
    assert "requested by" not in out
    assert "/ganops shows and decides" in out
    assert "unknown command /nonsense" in out
    assert "no button '1'" in out
    assert "/user NAME" in out  # the shell's own help
    assert out.count("you are bob") == 1  # nothing after /quit ran
    assert proc.stderr == ""  # logs go to the state dir, not the terminal
    assert (tmp_path / "state" / "bot.log").exists()


class SelfRunningLauncher(ScriptedLauncher):
    """Moves each run along by itself as time passes, like a real pipeline would."""

    def __init__(self, grid: Path) -> None:
        super().__init__()
        self.grid = grid

    def status(self, run_id: str) -> RunStatus:
        run = super().status(run_id)
        age = time.time() - (run.created_at or time.time())
        if run.final:
            return run
        if age < 0.6:
            return self.move(run_id, state="running", current_step="train", steps_done=2,
                             train_step=int(age * 100), train_total=60, losses={"G": 1 - age})  # fmt: skip
        return self.move(run_id, **finished("3", {"sample_grid": "runs:/r3/sample_grid.png"}))


@pytest.mark.slow
def test_the_whole_story_in_the_shell(tmp_path: Path) -> None:
    grid = tmp_path / "grid.png"
    Image.new("RGB", (32, 96), (0, 128, 0)).save(grid)
    launcher = SelfRunningLauncher(grid)
    registry, deployer = MemoryRegistry(), RecordingDeployer()
    registry.add("cut", "3")
    registry.runs[("cut", "3")] = "r3"  # the pictures come from the version's MLflow run
    registry.artifacts["runs:/r3/sample_grid.png"] = grid.read_bytes()
    settings = load_settings(
        {
            "GANOPS_STATE_DIR": str(tmp_path / "state"),
            "GANOPS_APPROVERS": user_id("carol"),
            "GANOPS_POLL_INTERVAL": "0.2",
        }
    )
    out = io.StringIO()
    shell = Shell(
        settings, out, services_factory=lambda s: make_services(s, launcher, registry, deployer)
    )
    # [1] is the run message's Cancel, [2] the card's Approve
    lines = ["/retrain epochs=2", "/wait 30", "approve", "/user carol", "2", "/wait 30",
             "/ganops runs", "/sleep 0.5"]  # fmt: skip
    assert shell.run(lines, eof_wait_s=10) == 0
    text = out.getvalue()

    assert "Retrain `cut` requested by @alice" in text
    assert "↻ Retrain cut (running) by @alice" in text  # progress, one line per update
    assert "== Challenger cut v3 is ready for review ==" in text
    assert "[1] Cancel" in text  # on the run message while it runs
    assert "[2] Approve  [3] Reject" in text
    assert "You asked for this model" in text or "You are not an approver" in text
    assert "(carol clicked Approve)" in text
    assert "Approved by @carol" in text
    assert deployer.calls == [("cut", "3", "models:/ganops-cut/3")]
    [saved] = list((tmp_path / "state" / "shell-files").iterdir())
    assert f"📎 Sample grid: fixed inputs → champion → challenger: {saved}" in text
    assert saved.read_bytes() == grid.read_bytes()
    assert "local run `run-1` `cut` awaiting approval by @alice" in text
