"""The canary's thread over signed HTTP with the local Slack: the step post carries Promote now
and Roll back, each behind a confirm and carrying only the canary id; a member who is not an
approver is refused by the gate (told alone, audited, nothing moves); an approver's click
promotes or rolls back, once."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ganops.bot.blocks.canary import PROMOTE_ACTION, ROLLBACK_ACTION
from ganops.bot.canary.controller import CanaryController
from ganops.bot.canary.notify import SlackNotifier
from ganops.bot.ports import Approval
from ganops.bot.services import Services
from ganops.bot.settings import Settings
from tests.fakes.approvals import MemoryRegistry, RecordingDeployer
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import (
    ALICE,
    CAROL,
    CHANNEL,
    Bot,
    buttons,
    eventually,
    make_services,
    start_bot,
)


@pytest.fixture
def registry() -> MemoryRegistry:
    reg = MemoryRegistry()
    reg.add("cut", "1", "2", "3")
    reg.aliases[("cut", "champion")] = "1"
    return reg


@pytest.fixture
def bot(tmp_path: Path, registry: MemoryRegistry) -> Iterator[Bot]:
    deployer = RecordingDeployer(serving={"cut": "1"}, uris={"cut": "models:/ganops-cut/1"})

    def services(settings: Settings) -> Services:
        built = make_services(settings, ScriptedLauncher(), registry, deployer)
        assert built.approvals is not None
        built.approvals.rollout.canary_steps = (10, 50, 100)
        canaries = CanaryController(
            store=built.store,
            rollout=built.approvals.rollout,
            analyse=lambda c, w: {"outcome": "inconclusive", "reasons": ["no traffic"], "rows": []},
            step_s=600.0,
            notifier=SlackNotifier(built.slack, settings.channel),
        )
        built.approvals.rollout.canary = canaries
        return dataclasses.replace(built, canaries=canaries)

    bot = start_bot(tmp_path, ScriptedLauncher(), services)
    yield bot
    bot.stop()


def approve(bot: Bot, version: str) -> Approval:
    book = bot.services.approvals
    assert book is not None
    a = book.request(model="cut", version=version, model_uri=f"models:/ganops-cut/{version}",
                     requested_by=ALICE)  # fmt: skip
    assert book.decide(a.approval_id, CAROL, "approve").status == "approved"
    return a


def step_post(bot: Bot, version: str) -> dict[str, Any]:
    return eventually(lambda: next((m for m in bot.slack.messages(CHANNEL)
                                    if f"v{version} at 10%" in str(m.get("text"))), None))  # fmt: skip


def test_the_step_post_has_both_buttons_with_confirms_and_only_the_id(bot: Bot) -> None:
    a = approve(bot, "2")
    post = step_post(bot, "2")
    found = {b["action_id"]: b for b in buttons(post)}
    assert set(found) == {PROMOTE_ACTION, ROLLBACK_ACTION}
    for b in found.values():
        assert b["value"] == a.approval_id
        assert b["confirm"]["confirm"]["text"] in ("Promote", "Roll back")


def test_a_member_is_refused_and_an_approver_promotes(bot: Bot, registry: MemoryRegistry) -> None:
    a = approve(bot, "2")
    post = step_post(bot, "2")
    assert bot.click(PROMOTE_ACTION, a.approval_id, ALICE, post["ts"]).status_code == 200
    told = eventually(lambda: bot.slack.ephemerals(ALICE))
    assert "Only approvers may promote or roll back a canary" in told[-1]["text"]
    assert bot.click(ROLLBACK_ACTION, a.approval_id, ALICE, post["ts"]).status_code == 200
    eventually(lambda: len(bot.slack.ephemerals(ALICE)) == 2)
    assert bot.services.canaries is not None
    c = bot.services.canaries.get(a.approval_id)
    assert c is not None
    assert c.state == "running"
    refused = [
        r for r in bot.services.store.list_audit(100) if r.actor == ALICE and r.action == "canary"
    ]
    assert [(r.outcome, r.path) for r in refused] == [("refused", "button")] * 2
    assert registry.aliases[("cut", "champion")] == "1"

    bot.click(PROMOTE_ACTION, a.approval_id, CAROL, post["ts"])
    eventually(lambda: registry.aliases[("cut", "champion")] == "2")
    eventually(lambda: any("promoted" in m["text"] for m in bot.slack.ephemerals(CAROL)))
    bot.click(PROMOTE_ACTION, a.approval_id, CAROL, post["ts"])  # a second click: no-op
    eventually(lambda: any("ended already" in m["text"] for m in bot.slack.ephemerals(CAROL)))


def test_an_approver_rolls_back_and_the_channel_is_told(bot: Bot, registry: MemoryRegistry) -> None:
    a = approve(bot, "2")
    post = step_post(bot, "2")
    bot.click(ROLLBACK_ACTION, a.approval_id, CAROL, post["ts"])
    told = eventually(lambda: next((m for m in bot.slack.messages(CHANNEL)
                                    if "rolled back" in str(m.get("text"))), None))  # fmt: skip
    assert "v2" in told["text"]
    assert registry.aliases[("cut", "champion")] == "1"


def test_ganops_status_lists_the_running_canary(bot: Bot) -> None:
    approve(bot, "2")
    step_post(bot, "2")
    bot.slash("/ganops", "status", user=ALICE)
    said = eventually(lambda: [m for m in bot.slack.messages() if "Canaries being judged" in
                               json.dumps(m.get("blocks"))] or [e for e in bot.slack.ephemerals(ALICE)
                               if "Canaries being judged" in json.dumps(e.get("blocks"))])  # fmt: skip
    shown = json.dumps(said[-1].get("blocks"))
    assert "v2 at *10%* beside v1, step 1 of 3" in shown
