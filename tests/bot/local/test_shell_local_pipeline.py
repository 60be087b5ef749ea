"""`ganops bot` in the shell, with nothing faked: the real LocalLauncher runs the CT pipeline
through kfp.local, MLflow is a sqlite store, and the results card arrives with its pictures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ganops.bot.adapters.registry import MlflowRegistry
from ganops.bot.runs.record import RunBook
from ganops.bot.store import Store

# End to end like the demo (a whole pipeline behind the shell, ~40 s of CPU): `make test-all`.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]


def test_retrain_in_the_shell_runs_the_pipeline_and_shows_the_card(tmp_path: Path) -> None:
    state = tmp_path / "state"
    script = "/retrain steps=60 batch_size=2 image_size=32\n/wait 540\n/ganops runs\n/quit\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GANOPS_"))}
    env |= {"GANOPS_STATE_DIR": str(state), "GANOPS_APPROVERS": "U_CAROL",
            "PYTHONPATH": str(REPO)}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "ganops.bot.cli", "bot"],
        input=script,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "Retrain `cut` requested by @alice" in out
    assert "stage 3/6 · train" in out  # live progress reached the terminal
    assert "== Challenger cut v1 is ready for review ==" in out
    assert "[1] Approve  [2] Reject" in out
    saved = re.findall(r"📎 .*: (/\S+\.png)$", out, flags=re.MULTILINE)
    assert len(saved) == 2  # the sample grid and the loss curve
    for path in saved:
        with Image.open(path) as image:
            assert image.width > 32
            assert image.height > 32

    [row] = RunBook(Store(state)).recent(5)
    assert row.settled
    assert row.state == "awaiting_approval"
    assert row.approval_id is not None
    assert f"local run `{row.run_id}` `cut` awaiting approval" in out
    challenger = MlflowRegistry(f"sqlite:///{(state / 'mlflow.db').resolve()}").get_alias(
        "cut", "challenger"
    )
    assert challenger is not None
    assert challenger.version == "1"
