"""Approvals carry what they expect: a rollback is decided by compare-and-set on the champion
it replaces; `/ganops rollback N` refuses a version its gate failed unless an approver forces
it with a reason; a run's finish supersedes only approvals nobody has voted on.

The HTTP tests drive the real Bolt app over signed requests with the local Slack and MLflow
on sqlite (`tests.bot.approvals.test_recovery`'s seeded registry, one copy per test).
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

from ganops.bot.approvals.jobs import carry_out_recorded
from ganops.bot.local.slack import LocalSlack
from tests.bot.approvals.test_book import ALICE, BOB, CAROL, DAVE, ask, make_book
from tests.bot.approvals.test_http import (
    CHANNEL,
    Bot,
    card,
    click,
    ephemeral_to,
    post_card,
    send,
    start_bot,
)
from tests.bot.approvals.test_recovery import MODEL, mlflow_uri, seeded_mlflow, slack
from tests.fakes.approvals import MemoryRegistry, RecordingDeployer

__all__ = ["mlflow_uri", "seeded_mlflow", "slack"]  # fixtures, shared with test_recovery


def slash(bot: Bot, text: str, user: str) -> int:
    form = {
        "token": "legacy",
        "team_id": "T1",
        "team_domain": "ops",
        "channel_id": CHANNEL,
        "channel_name": "ganops",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/ganops",
        "text": text,
        "api_app_id": "A1",
        "response_url": bot.slack.response_url(CHANNEL, user),
        "trigger_id": f"t-{text}-{user}",
    }
    return send(bot, urllib.parse.urlencode(form))


def answered(bot: Bot, text: str, user: str) -> str:
    """`/ganops text` as `user`; the blocks of the private answer it got."""
    before = len(bot.slack.ephemerals(user))
    assert slash(bot, text, user) == 200
    new = bot.slack.wait_for(lambda s: s.ephemerals(user)[before:])
    return json.dumps(new[0]["blocks"], ensure_ascii=False)


def rollback_cards(slack: LocalSlack) -> list[dict[str, Any]]:
    return [m for m in slack.messages(CHANNEL) if "Rollback requested" in m.get("text", "")]


def deploy(bot: Bot, version: str) -> None:
    a, message = post_card(bot, MODEL, version)
    assert click(bot, BOB, "approve", a, message) == 200
    bot.settle()
    assert bot.deployer.serving[MODEL] == version


def test_a_rollback_approved_after_a_newer_deploy_is_stale_and_deploys_nothing(
    tmp_path: Path, slack: LocalSlack, mlflow_uri: str
) -> None:
    bot = start_bot(tmp_path / "state", slack, mlflow_uri)
    try:
        deploy(bot, "2")  # champion v2, previous_champion v1
        assert slash(bot, "rollback", CAROL) == 200  # back to v1, replacing v2
        bot.settle()
        [rb_card] = rollback_cards(slack)
        rb = bot.book.recent(1)[0]
        assert (rb.kind, rb.version, rb.expected_champion) == ("rollback", "1", "2")
        deploy(bot, "3")  # a newer deploy comes first: champion v3
        assert click(bot, BOB, "approve", rb, rb_card) == 200
        bot.settle()
        said = ephemeral_to(slack, BOB)
    finally:
        bot.stop()
    assert said.startswith("Stale: rollback to cut v1 no longer applies (the champion is v3 now")
    assert "nothing was deployed" in said
    assert [c[1] for c in bot.deployer.calls] == ["2", "3"]  # the rollback deployed nothing
    assert bot.deployer.serving[MODEL] == "3"
    assert bot.registry.get_alias(MODEL, "champion").version == "3"  # type: ignore[union-attr]
    assert bot.book.get(rb.approval_id).state == "stale"  # type: ignore[union-attr]
    shown = json.dumps(card(slack, rb_card["ts"])["blocks"])
    assert ":warning: Stale at" in shown
    assert "v2 is no longer the champion" in shown
    assert '"approve"' not in shown  # no buttons left
    row = next(r for r in bot.book.store.list_audit(obj=rb.approval_id) if r.action == "decide")
    assert (row.actor, row.outcome, row.path) == (BOB, "stale", "button")


def test_a_rollback_that_goes_stale_while_waiting_for_its_rollout_deploys_nothing(
    tmp_path: Path,
) -> None:
    """The compare-and-set is made again under the model's lock, right before the rollout:
    a deploy that finished in between has moved the champion."""
    registry = MemoryRegistry()
    registry.add("cut", "1", "2", "3")
    registry.aliases[("cut", "champion")] = "2"
    registry.aliases[("cut", "previous_champion")] = "1"
    deployer = RecordingDeployer()
    book = make_book(tmp_path, registry, deployer)
    rb = book.request_rollback("cut", ALICE)
    assert book.decide(rb.approval_id, BOB, "approve", carry_out=False).status == "approved"
    assert book.decide(ask(book, "3").approval_id, CAROL, "approve").status == "approved"
    carry_out_recorded(book)  # the bot's job picks up the recorded rollback
    assert deployer.calls == [("cut", "3", "models:/ganops-cut/3")]
    assert book.get(rb.approval_id).state == "stale"  # type: ignore[union-attr]
    result = book.deploy_result(rb.approval_id)
    assert result is not None
    assert not result.ok
    assert result.message.startswith("stale: the champion is v3 now, not v2")


def test_a_rollback_is_stale_when_a_newer_deploy_is_approved_but_still_rolling(
    tmp_path: Path,
) -> None:
    """Inside the decision's transaction: the approvals table knows of the newer deploy
    before MLflow's alias moves."""
    registry = MemoryRegistry()
    registry.add("cut", "1", "2", "3")
    registry.aliases[("cut", "champion")] = "2"
    registry.aliases[("cut", "previous_champion")] = "1"
    book = make_book(tmp_path, registry, RecordingDeployer())
    rb = book.request_rollback("cut", ALICE)
    book.clock.now += 1  # type: ignore[attr-defined]
    newer = ask(book, "3")
    assert book.decide(newer.approval_id, CAROL, "approve", carry_out=False).status == "approved"
    out = book.decide(rb.approval_id, BOB, "approve")
    assert out.status == "stale"
    assert "deploy of cut v3 was approved after it was asked for" in out.message


def test_a_gate_failed_version_needs_force_and_a_reason(
    tmp_path: Path, slack: LocalSlack, mlflow_uri: str
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    client.set_model_version_tag(f"ganops-{MODEL}", "3", "gate_passed", "false")
    client.set_model_version_tag(f"ganops-{MODEL}", "3", "gate_reason", "score 0.41 < bar 0.5")
    bot = start_bot(tmp_path / "state", slack, mlflow_uri)
    try:
        refused = answered(bot, "rollback 3", CAROL)
        no_reason = answered(bot, "rollback 3 force=true", CAROL)
        asked = answered(bot, "rollback 3 force=true reason=“v2 mangles faces”", CAROL)
        bot.settle()
        [forced] = rollback_cards(slack)
    finally:
        bot.stop()
    assert "failed its evaluation gate (score 0.41 &lt; bar 0.5)" in refused
    assert 'rollback cut 3 force=true reason=\\"…\\"' in refused
    assert "force=true needs a reason" in no_reason
    assert "Asked for a rollback of `cut` to v3" in asked
    rows = bot.book.store.list_audit(20, obj=f"{MODEL} v3")
    assert [(r.actor, r.action, r.outcome, r.path) for r in rows] == [
        (CAROL, "rollback_force", "forced", "slash"),
        (CAROL, "rollback", "refused", "slash"),
    ]
    assert rows[0].detail["reason"] == "v2 mangles faces"
    assert "Forced past a failed gate by <@U_CAROL>" in json.dumps(forced["blocks"])
    rb = bot.book.recent(1)[0]
    assert (rb.kind, rb.version, rb.state) == ("rollback", "3", "pending")
    assert bot.deployer.calls == []  # asking deploys nothing; an approver decides on the card


def test_a_finish_supersedes_only_unvoted_approvals_of_its_kind(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    registry.add("cut", "1", "2", "3", "4")
    registry.aliases[("cut", "champion")] = "1"
    registry.aliases[("cut", "previous_champion")] = "1"
    deployer = RecordingDeployer()
    book = make_book(tmp_path, registry, deployer, required=2)
    voted, unvoted = ask(book, "2"), ask(book, "3")  # v3's finish supersedes v2: no vote yet
    assert book.get(voted.approval_id).state == "superseded"  # type: ignore[union-attr]
    voted = ask(book, "2")  # v2 again; a first vote lands before the next finish
    assert book.decide(voted.approval_id, BOB, "approve").status == "recorded"
    rollback = book.request_rollback("cut", DAVE, version="1")
    newest = ask(book, "4")  # a run's finish
    state = {a.approval_id: a.state for a in book.recent(10)}
    assert state[unvoted.approval_id] == "superseded"  # nobody had voted on it
    assert state[voted.approval_id] == "pending"  # BOB's vote is not wiped
    assert state[rollback.approval_id] == "pending"  # another kind
    assert state[newest.approval_id] == "pending"
    second = book.decide(voted.approval_id, CAROL, "approve")  # the first vote still counts
    assert second.status == "approved"
    assert second.approval is not None
    assert second.approval.approvers == (BOB, CAROL)
    assert deployer.calls == [("cut", "2", "models:/ganops-cut/2")]
