"""Fetch refusals through the whole local pipeline: LocalLauncher's worker runs kfp.local, the
ingest component builds its rules from the pipeline parameters (`data_allow`,
`data_anywhere`), and the run ends failed at ingest with the rule's reason as its error, which
the bot's run card shows as is."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ganops.bot.blocks import blocks_to_dicts
from ganops.bot.blocks.runs import RunView, failure_blocks
from ganops.pipeline.launch.local import LocalLauncher
from ganops.pipeline.ports import RunParams, RunStatus

pytestmark = pytest.mark.slow

IMAGE = "ganops-trainer:test"
TIMEOUT_S = 300


def _wait(launcher: LocalLauncher, run_ids: list[str]) -> list[RunStatus]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        states = [launcher.status(r) for r in run_ids]
        if all(s.final for s in states):
            return states
        time.sleep(1)
    raise AssertionError(f"runs not final after {TIMEOUT_S}s")


def _card(st: RunStatus) -> str:
    view = RunView(
        run_id=st.run_id,
        model=st.model,
        requested_by="U1",
        state=st.state,
        failed_step=st.failed_step,
        error=st.error,
    )
    return json.dumps(blocks_to_dicts(failure_blocks(view)))


def test_refusals_reach_the_run_through_kfp_local(
    tmp_path: Path, fresh_mlflow: Callable[[Path], str]
) -> None:
    from ganops.model.synthetic import make_synthetic

    allowed, secret = tmp_path / "allowed", tmp_path / "secret"
    data = make_synthetic(allowed / "set", n_train=4, n_test=2, image_size=32)
    secret.mkdir()
    (secret / "id_rsa.png").write_bytes(b"not for the trainer")
    (data / "trainB" / "leak.png").symlink_to(secret / "id_rsa.png")
    state = tmp_path / "state"
    uri = fresh_mlflow(state / "mlflow.db")
    launcher = LocalLauncher(state, uri, IMAGE, data_allow=(f"{allowed}/",))
    # A channel member's run, inside the allowlist as text, and an approver's (any data).
    member = launcher.launch(RunParams(data=str(data)), "member")
    approver = launcher.launch(
        RunParams(
            model="cyclegan", data="http://169.254.169.254/latest/set.tgz", data_anywhere=True
        ),
        "approver",
    )
    symlinked, metadata = _wait(launcher, [member.run_id, approver.run_id])
    for st in (symlinked, metadata):
        assert (st.state, st.failed_step, st.steps_done) == ("failed", "ingest", 0)
    assert symlinked.error == (
        f"refused: trainB/leak.png in {data} is a symlink to {secret / 'id_rsa.png'}, "
        "outside the data folder"
    )
    assert metadata.error == (
        "refused: 169.254.169.254 is a link-local (cloud metadata) address; "
        "GANOPS_DATA_ALLOW must name the host to allow it"
    )
    assert metadata.error in _card(metadata)
    assert "failed at *ingest*" in _card(metadata)
