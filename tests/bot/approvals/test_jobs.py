"""Cards follow the store: the expiry tick, decisions made away from the buttons (CLI,
`/ganops`), Slack failures that heal on the next tick, and the pure card builders.
The Web API is the local Slack server; the registry and deployer are the in-memory doubles.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.approvals.jobs import approval_tick, show_decision
from ganops.bot.blocks import blocks_to_dicts, section
from ganops.bot.blocks.approvals import approval_line, audit_line, decided_card, deploy_result_text
from ganops.bot.blocks.runs import approval_buttons
from ganops.bot.local.slack import LocalSlack
from ganops.bot.ports import Approval, DeployResult
from ganops.bot.store import Store
from tests.fakes.approvals import MemoryRegistry, RecordingDeployer

TOKEN, CHANNEL, ALICE, BOB, CAROL = "xoxb-t", "C_OPS", "U_ALICE", "U_BOB", "U_CAROL"


class Clock:
    now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    server = LocalSlack(token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def client(slack: LocalSlack) -> WebClient:
    return WebClient(token=TOKEN, base_url=slack.url)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def deployer() -> RecordingDeployer:
    return RecordingDeployer()


@pytest.fixture
def book(tmp_path: Path, clock: Clock, deployer: RecordingDeployer) -> ApprovalBook:
    registry = MemoryRegistry()
    registry.add("cut", "1", "2", "3")
    registry.aliases[("cut", "champion")] = "1"
    return ApprovalBook(
        Store(tmp_path),
        registry,
        deployer,
        approvers=frozenset({BOB, CAROL}),
        ttl_s=60,
        clock=clock,
    )


def posted(
    book: ApprovalBook, client: WebClient, version: str = "2", attach: bool = True
) -> Approval:
    a = book.request(
        model="cut",
        version=version,
        model_uri=f"models:/ganops-cut/{version}",
        requested_by=ALICE,
        channel=CHANNEL,
    )
    blocks = blocks_to_dicts([section(f"*cut v{version}*"), approval_buttons(a.approval_id)])
    resp = client.chat_postMessage(channel=CHANNEL, text="card", blocks=blocks)
    book.attach_message(a.approval_id, CHANNEL, str(resp["ts"]), blocks if attach else None)
    return book.get(a.approval_id) or a


def shown(slack: LocalSlack, a: Approval) -> dict[str, Any]:
    return next(m for m in slack.messages(CHANNEL) if m["ts"] == a.message_ts)


def replies(slack: LocalSlack, a: Approval) -> list[dict[str, Any]]:
    return [m for m in slack.messages(CHANNEL) if m.get("thread_ts") == a.message_ts]


def has_buttons(message: dict[str, Any]) -> bool:
    return any(b["type"] == "actions" for b in message["blocks"])


def test_the_tick_expires_and_updates_the_card_once(
    book: ApprovalBook, client: WebClient, slack: LocalSlack, clock: Clock
) -> None:
    a = posted(book, client)
    assert approval_tick(book, client) == 0  # nothing due yet
    clock.now += 61
    assert approval_tick(book, client) == 1
    card = shown(slack, a)
    assert not has_buttons(card)
    assert "Expired at" in json.dumps(card["blocks"])
    assert "rejected: nobody decided in time" in card["text"]
    assert book.registry.tags[("cut", "2")] == {"decision": "expired"}  # type: ignore[attr-defined]
    assert approval_tick(book, client) == 0
    assert len(slack.calls("chat.update")) == 1


def test_a_decision_made_elsewhere_reaches_the_card_and_thread(
    book: ApprovalBook, client: WebClient, slack: LocalSlack, deployer: RecordingDeployer
) -> None:
    a = posted(book, client)
    outcome = book.decide(a.approval_id, CAROL, "approve")  # e.g. `ganops approvals decide`
    assert outcome.status == "approved"
    assert approval_tick(book, client) == 2  # the card, and the result in its thread
    card = shown(slack, a)
    assert not has_buttons(card)
    assert f"Approved by <@{CAROL}> at" in card["text"]
    assert "v2 live in" in card["text"]
    [reply] = replies(slack, a)
    assert reply["text"].startswith(":rocket: Deployed cut v2 in ")
    assert approval_tick(book, client) == 0
    assert len(deployer.calls) == 1


def test_supersede_marks_the_older_card(
    book: ApprovalBook, client: WebClient, slack: LocalSlack
) -> None:
    old = posted(book, client, "2")
    new = posted(book, client, "3")
    approval_tick(book, client)
    assert "Superseded" in shown(slack, old)["text"]
    assert not has_buttons(shown(slack, old))
    assert has_buttons(shown(slack, new))


def test_slack_failures_heal_on_the_next_tick(
    book: ApprovalBook, client: WebClient, slack: LocalSlack
) -> None:
    a = posted(book, client)
    book.decide(a.approval_id, BOB, "approve")
    slack.fail_next("chat.update", "ratelimited")
    slack.fail_next("chat.postMessage", "ratelimited")
    assert approval_tick(book, client) == 0
    assert has_buttons(shown(slack, a))
    assert approval_tick(book, client) == 2
    assert not has_buttons(shown(slack, a))
    assert len(replies(slack, a)) == 1


def test_show_decision_two_person_rule_keeps_the_buttons(
    tmp_path: Path, client: WebClient, slack: LocalSlack, deployer: RecordingDeployer
) -> None:
    book = ApprovalBook(
        Store(tmp_path), MemoryRegistry(), deployer, approvers=frozenset({BOB, CAROL}), required=2
    )
    a = posted(book, client)
    first = book.decide(a.approval_id, BOB, "approve")
    show_decision(book, client, first)
    card = shown(slack, a)
    assert has_buttons(card)
    assert "waiting for a second approver" in json.dumps(card["blocks"])
    show_decision(book, client, book.decide(a.approval_id, CAROL, "approve"))
    card = shown(slack, a)
    assert not has_buttons(card)
    assert f"<@{BOB}> and <@{CAROL}>" in card["text"]
    assert len(replies(slack, a)) == 1
    assert len(deployer.calls) == 1


def test_a_refusal_changes_no_card(
    book: ApprovalBook, client: WebClient, slack: LocalSlack
) -> None:
    a = posted(book, client)
    show_decision(book, client, book.decide(a.approval_id, "U_MALLORY", "approve"))
    assert slack.calls("chat.update") == []


def test_without_stored_blocks_the_card_falls_back(
    book: ApprovalBook, client: WebClient, slack: LocalSlack
) -> None:
    a = posted(book, client, attach=False)
    book.decide(a.approval_id, BOB, "reject")
    approval_tick(book, client)
    card = shown(slack, a)
    assert "Deploy of cut v2" in json.dumps(card["blocks"])
    assert f"Rejected by <@{BOB}>" in card["text"]


def test_decided_card_is_idempotent_and_keeps_other_buttons() -> None:
    a = Approval("id1", None, "cut", "2", "u", "deploy", ALICE, "rejected", 0.0, 60.0)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "x"}},
        {
            "type": "actions",
            "elements": [
                {"type": "button", "action_id": "approve", "value": "id1"},
                {"type": "button", "action_id": "open_mlflow", "url": "http://m"},
            ],
        },
    ]
    once = decided_card(blocks, a)
    assert decided_card(once, a) == once
    assert [e["action_id"] for e in once[1]["elements"]] == ["open_mlflow"]
    assert once[-1]["block_id"] == "ganops_decision"
    assert blocks[1]["elements"][0]["action_id"] == "approve"  # the input is not mutated


def test_result_texts_and_lines() -> None:
    a = Approval("id1", None, "cut", "8", "u", "deploy", ALICE, "approved", 0.0, 60.0)
    failed = DeployResult(False, "models:/ganops-cut/7", "8", "7", True, 12.0, "probe failed")
    text = deploy_result_text(a, failed)
    assert "rolled back; v7 keeps serving" in text
    assert "12.0 s" in text
    assert approval_line(a).startswith("id1  deploy of cut v8  by U_ALICE  approved")


def test_audit_line_is_one_line(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.audit(BOB, "decide", "id1", "refused", {"reason": "You are not an approver."})
    line = audit_line(store.list_audit()[0])
    assert "U_BOB  decide  id1  refused  (reason=You are not an approver.)" in line
    assert "\n" not in line
