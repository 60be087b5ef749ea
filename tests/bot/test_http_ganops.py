"""`/ganops` through the real Bolt app in HTTP mode: answers, decisions and rollbacks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.approvals import MemoryRegistry
from tests.fakes.launcher import ScriptedLauncher, finished
from tests.fakes.slack import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    Bot,
    buttons,
    eventually,
    make_services,
    start_bot,
)


@pytest.fixture
def launcher() -> ScriptedLauncher:
    return ScriptedLauncher()


@pytest.fixture
def registry() -> MemoryRegistry:
    registry = MemoryRegistry()
    registry.add("cut", "1", "2", "3")
    registry.aliases[("cut", "champion")] = "2"
    registry.aliases[("cut", "previous_champion")] = "1"
    registry.aliases[("cut", "challenger")] = "3"
    return registry


@pytest.fixture
def bot(tmp_path: Path, launcher: ScriptedLauncher, registry: MemoryRegistry) -> Iterator[Bot]:
    bot = start_bot(tmp_path, launcher, lambda s: make_services(s, launcher, registry))
    yield bot
    bot.stop()


def answer(bot: Bot, text: str, user: str = ALICE) -> str:
    before = len(bot.slack.ephemerals(user))
    assert bot.slash("/ganops", text, user=user, trigger_id=f"t-{text}").status_code == 200
    new = bot.slack.wait_for(lambda s: s.ephemerals(user)[before:])
    return str(new[0]["blocks"])


def test_help_and_approvers_are_answered_in_the_ack(bot: Bot) -> None:
    body = bot.slash("/ganops", "help").json()
    assert body["response_type"] == "ephemeral"
    assert "/retrain" in str(body["blocks"])
    unknown = bot.slash("/ganops", "frobnicate").json()
    assert "I don't know `frobnicate`" in str(unknown["blocks"])
    approvers = bot.slash("/ganops", "approvers").json()
    assert f"<@{CAROL}>" in str(approvers["blocks"])


def test_status_shows_champion_challenger_and_runs(bot: Bot) -> None:
    bot.slash("/retrain", "epochs=1", trigger_id="t-run")
    eventually(lambda: bot.services.runbook.recent(1))
    shown = answer(bot, "status")
    assert "champion: v2" in shown
    assert "challenger: v3" in shown
    assert "run-1" in shown


def test_runs_models_and_audit(bot: Bot) -> None:
    bot.slash("/retrain", "epochs=1", trigger_id="t-run")
    # the run's message is posted after its audit row (the row alone may come first)
    eventually(lambda: [r for r in bot.services.runbook.recent(1) if r.message_ts])
    assert "run-1" in answer(bot, "runs")
    assert "queued" in answer(bot, "runs 5")
    models = answer(bot, "models cut")
    assert "champion" in models
    assert "previous_champion" in models
    assert "retrain" in answer(bot, "audit 5")  # start_run writes an audit row
    assert "retrain" in answer(bot, "audit --limit 5")
    assert "queued" in answer(bot, "runs --limit 5")
    assert "a number from 1 to 200" in answer(bot, "audit lots")


def test_audit_200_arrives_whole_in_sections_within_slack_limits(bot: Bot) -> None:
    for i in range(230):
        bot.services.store.audit(
            f"U{i:07d}", "decide", f"apv-{i:04d}", "refused",
            {"reason": "You are not an approver. <see the README> & ask"}, path="button",
        )  # fmt: skip
    before = len(bot.slack.ephemerals(ALICE))
    bot.slash("/ganops", "audit --limit 200", user=ALICE, trigger_id="t-audit")
    [reply] = bot.slack.wait_for(lambda s: s.ephemerals(ALICE)[before:])
    texts = [b["text"]["text"] for b in reply["blocks"]]
    assert texts[0].startswith("*Audit log (newest first, 200)*")
    assert len(reply["blocks"]) <= 50
    for text in texts:
        assert len(text) <= 3000
        assert text.count("```") % 2 == 0
    shown = "".join(texts)
    assert "apv-0229" in shown  # the newest
    assert "apv-0030" in shown  # and the 200th, at the very end
    assert "apv-0029" not in shown


def test_approve_by_slash_command_deploys_once_and_updates_the_card(
    bot: Bot, launcher: ScriptedLauncher, registry: MemoryRegistry
) -> None:
    bot.slash("/retrain", "epochs=1", trigger_id="t-run")
    eventually(lambda: (r := bot.services.runbook.recent(1)) and r[0].message_ts)
    launcher.move("run-1", **finished("3"))
    bot.watcher().tick()
    [card] = [m for m in bot.slack.messages(CHANNEL) if "ready for review" in m["text"]]
    approval_id = buttons(card)[0]["value"]

    assert "not an approver" in answer(bot, f"approve {approval_id}", user=BOB)
    assert "Approved" in answer(bot, f"approve {approval_id}", user=CAROL)
    assert "Already approved" in answer(bot, f"reject {approval_id}", user=CAROL)
    assert bot.services.deployer.calls == [("cut", "3", "models:/ganops-cut/3")]  # type: ignore[union-attr]
    updated = eventually(lambda: [m for m in bot.slack.messages(CHANNEL) if m["ts"] == card["ts"]
                                  and not buttons(m)])  # fmt: skip
    assert "Approved by" in str(updated[0]["blocks"])


def test_rollback_posts_an_approval_card(bot: Bot) -> None:
    assert "an approver decides" in answer(bot, "rollback", user=CAROL)  # approvers only
    [card] = [m for m in bot.slack.messages(CHANNEL) if "Rollback" in m["text"]]
    assert "from v2 back to v1" in str(card["blocks"])
    approval_id = buttons(card)[0]["value"]
    approval = bot.services.approvals.get(approval_id)  # type: ignore[union-attr]
    assert approval is not None
    assert approval.kind == "rollback"
    assert approval.version == "1"
    assert approval.message_ts == card["ts"]
    assert "already the champion" in answer(bot, "rollback 2", user=CAROL)
    assert "no version 9" in answer(bot, "rollback cut 9", user=CAROL)
