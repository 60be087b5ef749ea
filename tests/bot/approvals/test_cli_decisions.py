"""A decision the CLI records is carried out by the bot process, under the same per-model
lock as a click. The CLI runs in-process with its own services from the environment (as
`ganops approvals` does: the real LocalDeployer on the state dir, MLflow on sqlite); the bot
is the real Bolt app over HTTP with the local Slack, and its approvals job is
`approval_tick`, the function the bot's scheduler runs."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from slack_sdk import WebClient

from ganops.bot.approvals.admin import approvals_main, os_user
from ganops.bot.approvals.jobs import approval_tick, carry_out_recorded
from ganops.bot.local.slack import LocalSlack
from tests.bot.approvals.test_http import BOB, CAROL, TOKEN, card, post_card, start_bot, thread
from tests.bot.approvals.test_recovery import MODEL, mlflow_uri, seeded_mlflow, slack
from tests.fakes.slack import eventually

__all__ = ["mlflow_uri", "seeded_mlflow", "slack"]  # fixtures, shared with test_recovery


@pytest.mark.slow
def test_a_cli_decision_deploys_in_the_bot_under_the_model_lock(
    tmp_path: Path,
    slack: LocalSlack,
    mlflow_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "KFP_HOST", "GANOPS_DEPLOYER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GANOPS_STATE_DIR", str(state))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("GANOPS_APPROVERS", f"{BOB},{CAROL}")
    monkeypatch.setenv("GANOPS_CLI_USERS", f"{os_user()}={CAROL}")
    bot = start_bot(state, slack, mlflow_uri)
    try:
        approval, message = post_card(bot, MODEL, "2")
        assert approvals_main(["decide", approval.approval_id, "approve"]) == 0
        said = capsys.readouterr().out.strip()
        # Recorded, not deployed: the CLI's own deployer (a local server) never started.
        assert said == "Approved deploy of cut v2; the bot rolls it out on its next approvals tick."
        assert not (state / "serving").exists()
        assert bot.deployer.calls == []
        assert bot.book.get(approval.approval_id).state == "approved"  # type: ignore[union-attr]
        assert bot.book.deploy_result(approval.approval_id) is None

        client = WebClient(token=TOKEN, base_url=slack.url)
        lock = bot.book.rollout.model_lock(MODEL)
        with lock:  # a click's rollout of the same model is running
            tick = threading.Thread(target=approval_tick, args=(bot.book, client))
            tick.start()
            tick.join(timeout=1.5)
            assert tick.is_alive()  # the job waits for the lock
            assert bot.deployer.calls == []
        tick.join(timeout=30)
        assert not tick.is_alive()
        assert bot.deployer.calls == [(MODEL, "2", f"models:/ganops-{MODEL}/2")]
        assert approval_tick(bot.book, client) == 0  # claimed once: no second rollout
        assert len(bot.deployer.calls) == 1
    finally:
        bot.stop()
    assert bot.registry.get_alias(MODEL, "champion").version == "2"  # type: ignore[union-attr]
    [reply] = eventually(lambda: thread(slack, message["ts"]))
    assert reply["text"].startswith(":rocket: Deployed cut v2")
    shown = json.dumps(card(slack, message["ts"])["blocks"])
    assert f"Approved by <@{CAROL}>" in shown
    rows = [r for r in bot.book.store.list_audit(50, obj=approval.approval_id)]
    decided = next(r for r in rows if r.action == "decide")
    assert (decided.actor, decided.outcome, decided.path) == (CAROL, "approved", "cli")
    assert decided.detail["carried_out_by"] == "the bot's approvals job"
    assert decided.detail["os_user"] == os_user()
    assert [r.outcome for r in rows if r.action == "deploy"] == ["ok"]


def test_a_recorded_decision_past_its_deadline_is_not_rolled_out_by_the_job(
    tmp_path: Path,
) -> None:
    """The job keeps the restart's rule: only young decisions roll out on their own."""
    from tests.bot.approvals.test_book import Clock, ask, make_book
    from tests.fakes.approvals import MemoryRegistry, RecordingDeployer

    registry = MemoryRegistry()
    registry.add("cut", "1", "2")
    registry.aliases[("cut", "champion")] = "1"
    deployer, clock = RecordingDeployer(), Clock()
    book = make_book(tmp_path, registry, deployer, clock, ttl_s=3600)
    a = ask(book, "2")
    assert book.decide(a.approval_id, BOB, "approve", carry_out=False).status == "approved"
    clock.now += 3601  # the bot was down past the decision's deadline (expires_at, TTL)
    assert [x.approval_id for x in carry_out_recorded(book)] == [a.approval_id]
    assert deployer.calls == []
    result = book.deploy_result(a.approval_id)
    assert result is not None
    assert not result.ok
    assert result.message.startswith("not rolled out: it was approved 1.0 h ago, past its expiry")
    assert carry_out_recorded(book) == []  # on record: never picked up again
    assert registry.aliases[("cut", "champion")] == "1"
