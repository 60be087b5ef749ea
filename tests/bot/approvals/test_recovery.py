"""Restarts never deploy what no one approved: the real Bolt app over signed HTTP, the local
Slack, the real MLflow registry on sqlite, and the bot's own scheduler (`build_jobs`), whose
first approvals tick is the start-up reconciliation. The deployer stands for the model server,
which outlives the bot, so a restart keeps it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ganops.bot.local.slack import LocalSlack
from ganops.bot.scheduler import build_jobs
from ganops.bot.store import AuditRow
from tests.bot.approvals.test_http import (
    BOB,
    CHANNEL,
    Bot,
    click,
    post_card,
    start_bot,
    thread,
)
from tests.fakes.slack import eventually

MODEL = "cut"


@pytest.fixture(scope="module")
def seeded_mlflow(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Path:
    """A registry with ganops-cut versions 1..3, champion -> 1 (made once, on a copy of the
    session's migrated store: MLflow's schema migrations take seconds)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    shutil.copyfile(mlflow_template, path)
    uri = f"sqlite:///{path}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(f"ganops-{MODEL}")
    for _ in range(3):
        client.create_model_version(f"ganops-{MODEL}", source="/tmp/none")
    client.set_registered_model_alias(f"ganops-{MODEL}", "champion", "1")
    return path


@pytest.fixture
def mlflow_uri(tmp_path: Path, seeded_mlflow: Path) -> str:
    """Each test gets its own copy of the seeded registry."""
    path = tmp_path / "mlflow.db"
    shutil.copyfile(seeded_mlflow, path)
    return f"sqlite:///{path}"


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    server = LocalSlack(token="xoxb-test").start()
    yield server
    server.stop()


def move_alias_by_hand(mlflow_uri: str, version: str) -> None:
    """What anyone who can write to MLflow can do: open-source MLflow has no auth."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    client.set_registered_model_alias(f"ganops-{MODEL}", "champion", version)


def start_up(bot: Bot) -> AuditRow:
    """Run the bot's jobs until its start-up reconciliation of `cut` is on record."""
    jobs = build_jobs(bot.settings, bot.services)
    jobs.start()
    try:
        return eventually(lambda: _reconciled(bot), timeout=60)
    finally:
        jobs.shutdown(wait=True)


def _reconciled(bot: Bot) -> AuditRow | None:
    rows = [r for r in bot.book.store.list_audit(200, obj=MODEL) if r.action == "reconcile"]
    return rows[0] if rows else None


def notes(slack: LocalSlack) -> list[dict[str, object]]:
    return [m for m in slack.messages(CHANNEL) if "After a restart" in str(m.get("text", ""))]


def test_an_alias_moved_by_hand_is_reported_and_nothing_deploys(
    tmp_path: Path, slack: LocalSlack, mlflow_uri: str
) -> None:
    first = start_bot(tmp_path / "state", slack, mlflow_uri)
    approval, message = post_card(first, MODEL, "2")
    assert click(first, BOB, "approve", approval, message) == 200
    first.settle()
    assert first.deployer.serving[MODEL] == "2"  # approved, rolled out, champion v2
    first.stop()

    move_alias_by_hand(mlflow_uri, "3")  # nobody approved v3
    second = start_bot(tmp_path / "state", slack, mlflow_uri, deployer=first.deployer)
    try:
        row = start_up(second)
    finally:
        second.stop()
    assert second.deployer.calls == [(MODEL, "2", f"models:/ganops-{MODEL}/2")]  # no new deploy
    assert second.deployer.serving[MODEL] == "2"  # the server is left as it is
    assert second.registry.get_alias(MODEL, "champion").version == "3"  # type: ignore[union-attr]
    assert (row.actor, row.outcome, row.detail["action"]) == ("ganops", "disagree", "report")
    assert "the champion alias names v3 but the last approved deploy is v2" in row.detail["reason"]
    [told] = notes(slack)
    assert told.get("thread_ts") is None  # in the channel, for everyone
    assert told["text"] == ("After a restart, cut still disagrees: v2 serves, the champion is v3.")
    assert "moved outside the bot" in json.dumps(told["blocks"])


def test_an_approved_rollout_older_than_its_expiry_is_not_rolled_out(
    tmp_path: Path, slack: LocalSlack, mlflow_uri: str
) -> None:
    first = start_bot(tmp_path / "state", slack, mlflow_uri, ttl_s=3600)
    approval, message = post_card(first, MODEL, "2")
    # What a bot killed right after the decision leaves, two TTLs ago: approved, no result.
    long_ago = first.clock.now - 7200
    with first.book.store.tx() as conn:
        conn.execute(
            "UPDATE approvals SET state='approved', decided_by=?, decided_at=?, approvers=?,"
            " created_at=?, expires_at=? WHERE approval_id=?",
            (BOB, long_ago, json.dumps([BOB]), long_ago - 60, long_ago + 60, approval.approval_id),
        )
    first.stop()

    second = start_bot(tmp_path / "state", slack, mlflow_uri, ttl_s=3600, deployer=first.deployer)
    try:
        row = start_up(second)
        replies = eventually(lambda: thread(slack, message["ts"]), timeout=30)
    finally:
        second.stop()
    assert second.deployer.calls == []  # nothing rolled out
    assert second.registry.get_alias(MODEL, "champion").version == "1"  # type: ignore[union-attr]
    assert (row.outcome, row.detail["action"]) == ("disagree", "report")
    assert row.detail["too_old"] == [approval.approval_id]
    assert "past its expiry, so it is not rolled out" in row.detail["reason"]
    result = second.book.deploy_result(approval.approval_id)
    assert result is not None
    assert not result.ok
    assert result.message.startswith("not rolled out: it was approved 2.0 h ago")
    assert [m.get("thread_ts") for m in notes(slack)] == [None, message["ts"]]
    assert any("not rolled out" in str(m["text"]) for m in replies)
