"""The shortened demo, end to end, as a user runs it: `ganops demo --quick`.

Real Prometheus, real MLflow (sqlite store and the UI server), real kfp.local runs, the real
LocalDeployer and model server, all driven through the shell adapter. Each stage is checked
in what it left behind (the audit log, MLflow, the alarms and runs tables, image files, the
processes), not only in what it printed.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.prometheus import prometheus_binary

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def rows(db: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def live_processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().split()[2]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline[:160]}")
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if prometheus_binary() is None:
        pytest.skip("prometheus is not installed (make prometheus)")
    state = tmp_path_factory.mktemp("demo") / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GANOPS_"))}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("KFP_HOST", None)
    # Its own session, so that a timeout (ours or pytest-timeout's) kills the whole tree: the
    # demo's Prometheus, MLflow and model server must not outlive it and skew later tests.
    proc = subprocess.Popen(
        [sys.executable, "-m", "ganops.bot.cli", "demo", "--quick", "--state-dir", str(state)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=1200)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    out = stdout + stderr
    assert proc.returncode == 0, out[-6000:]
    return state, out


def test_every_stage_ran_and_was_timed(demo: tuple[Path, str]) -> None:
    _, out = demo
    stages = ("1/7 set-up", "2/7 bootstrap", "3/7 retrain", "4/7 approvals", "5/7 a broken",
              "6/7 the closed")  # fmt: skip
    for stage in stages:
        assert f"══ {stage}" in out
    assert "timings:" in out
    assert "Traceback" not in out


def loop_result(out: str) -> dict[str, Any]:
    """The drift loop's figures, as the demo printed them."""
    [line] = [ln for ln in out.splitlines() if ln.startswith("» drift loop: ")]
    result: dict[str, Any] = json.loads(line[line.index("(") + 1 : -1])
    return result


def test_the_drift_loop_closed_on_the_captured_inputs(demo: tuple[Path, str]) -> None:
    state, out = demo
    result = loop_result(out)
    assert result["outcome"] == "resolved", result
    assert result["score_before"] > 1.0 > result["score_after"]
    # v3 is the broken challenger, rolled back by its canary
    assert (result["version_before"], result["version_after"]) == ("2", "4")
    db = state / "ganops.db"
    [alarm] = rows(db, "SELECT * FROM alarms LEFT JOIN alarm_outcomes USING (episode_id)")
    assert alarm["state"] == "resolved"
    assert alarm["outcome"].startswith("Resolved: v4 deployed at ")
    assert f"after retrain on {alarm['captured']} captured inputs; score " in alarm["outcome"]
    assert alarm["captured"] >= 36  # 48 captured at least, a quarter held out
    [run] = rows(db, "SELECT * FROM runs WHERE run_id=?", alarm["retrain_run_id"])
    [spec] = json.loads(json.loads(run["params"])["captured"])
    assert (spec["model"], spec["version"]) == ("cut", "2")
    assert list((state / "captured" / "cut" / "2").glob("*.png"))
    resolved = rows(db, "SELECT * FROM audit WHERE action='drift_alarm' AND outcome='resolved'")
    assert json.loads(resolved[0]["detail"])["deployed_version"] == "4"


def test_bob_was_refused_and_carol_deployed(demo: tuple[Path, str]) -> None:
    state, _ = demo
    audit = [
        (r["actor"], r["action"], r["outcome"])
        for r in rows(state / "ganops.db", "SELECT * FROM audit ORDER BY id")
    ]
    assert ("U_BOB", "decide", "refused") in audit
    # bootstrap, alice's retrain, the broken challenger, the drift retrain
    assert audit.count(("U_CAROL", "decide", "approved")) == 4
    # the bootstrap's plain deploy; each canary's start, and its promotion or rollback
    assert audit.count(("ganops", "deploy", "ok")) == 6
    assert audit.count(("ganops", "deploy", "rolled_back")) == 1
    assert ("U_ALICE", "retrain", "started") in audit
    approvals = rows(state / "ganops.db", "SELECT * FROM approvals ORDER BY created_at")
    assert [a["state"] for a in approvals[:4]] == ["approved"] * 4
    assert approvals[1]["decided_by"] == "U_CAROL"


def test_one_canary_promoted_the_broken_one_rolled_back_by_itself(demo: tuple[Path, str]) -> None:
    state, out = demo
    canaries = rows(state / "ganops.db", "SELECT * FROM canaries ORDER BY started_at")
    # The reasons ride along so that a canary that ended otherwise says why in CI's log.
    ended = [(c["version"], c["state"], c["reason"]) for c in canaries]
    assert [e[:2] for e in ended] == [
        ("2", "promoted"), ("3", "rolled_back"), ("4", "promoted")], ended  # fmt: skip
    broken = canaries[1]
    assert broken["ended_by"] == "ganops"  # the analysis, not a click
    assert "error rate 100.0%" in broken["reason"]
    assert "canary rolled back" in out


def test_the_champion_moved_in_mlflow(demo: tuple[Path, str]) -> None:
    from mlflow import MlflowClient

    state, _ = demo
    client = MlflowClient(tracking_uri=f"sqlite:///{state / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("ganops-cut", "champion")
    previous = client.get_model_version_by_alias("ganops-cut", "previous_champion")
    assert (str(champion.version), str(previous.version)) == ("4", "2")
    assert champion.tags["approved_by"] == "U_CAROL"
    assert champion.tags["data_digest"].startswith("sha256:")
    serving = state / "serving"
    assert not (serving / "current.json").exists()  # the demo stopped its server


def test_the_results_cards_images_were_saved(demo: tuple[Path, str]) -> None:
    state, out = demo
    grids = sorted((state / "shell-files").glob("*sample_grid*.png"))
    assert len(grids) >= 3
    for grid in grids:
        assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(grid) in out  # its path was printed


def test_drift_fired_and_retrain_was_threaded_under_the_alarm(demo: tuple[Path, str]) -> None:
    state, _ = demo
    db = state / "ganops.db"
    alarms = rows(db, "SELECT * FROM alarms WHERE retrain_run_id IS NOT NULL")
    assert len(alarms) == 1
    alarm = alarms[0]
    assert alarm["peak_score"] > 1.0
    assert json.loads(alarm["features"])
    runs = rows(db, "SELECT * FROM runs WHERE run_id=?", alarm["retrain_run_id"])
    assert len(runs) == 1
    assert runs[0]["thread_ts"] == alarm["message_ts"]
    assert runs[0]["request_id"] == alarm["episode_id"]


def test_every_process_it_started_is_gone(demo: tuple[Path, str]) -> None:
    state, _ = demo
    assert live_processes_mentioning(str(state)) == []
