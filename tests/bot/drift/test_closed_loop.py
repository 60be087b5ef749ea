"""The closed drift loop end to end on the embedded defaults: a real Prometheus scraping a real
`ganops serve` (started by the LocalDeployer with input capture on), the bot's real drift-watch
job, kfp.local runs, MLflow on sqlite, the approvals path through the shell adapter.

drift → alarm → Retrain now on the captured inputs (tiny preset, a few steps) → approve → deploy
→ the new version's score falls under 1 → the card reads Resolved.
"""

from __future__ import annotations

import io
import json
from contextlib import ExitStack
from pathlib import Path

import pytest

from ganops.bot.drift.alarms import AlarmBook
from ganops.bot.local.demo import DemoConfig, DemoStages, start_session
from ganops.bot.local.drift_loop import DriftLoop
from tests.fakes.prometheus import prometheus_binary

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_drift_alarm_retrain_on_captured_inputs_deploy_resolved(tmp_path: Path) -> None:
    if prometheus_binary() is None:
        pytest.skip("prometheus is not installed (make prometheus)")
    cfg = DemoConfig(
        state_dir=tmp_path / "state", bootstrap_steps=40, requests_per_phase=64, mlflow_ui=False
    )
    log = io.StringIO()

    def say(text: str) -> None:
        print(f"» {text}", file=log)

    with ExitStack() as stack:
        shell, _, _ = start_session(cfg, log, say, stack)
        DemoStages(shell, cfg, say).bootstrap()
        result = DriftLoop(shell, say, calm_requests=cfg.requests_per_phase).run()
        store = shell.services.store
    narrated = log.getvalue()
    assert result.outcome == "resolved", narrated[-4000:]
    assert AlarmBook(store).open_episodes() == []
    assert result.score_before is not None
    assert result.score_after is not None
    assert result.score_before > 1.0 > result.score_after
    assert (result.version_before, result.version_after) == ("1", "2")
    resolved = [r for r in store.list_audit(limit=100) if r.outcome == "resolved"]
    assert resolved[0].detail["deployed_version"] == "2"
    assert "after retrain on" in resolved[0].detail["note"]
    approved = [r for r in store.list_audit(limit=100) if r.action == "decide"]
    assert ("U_CAROL", "approved") in [(r.actor, r.outcome) for r in approved]
    runs = shell.services.runbook.recent(5)
    drift_run = next(r for r in runs if r.source == "drift-alarm")
    assert json.loads(drift_run.params["captured"])[0]["version"] == "1"
