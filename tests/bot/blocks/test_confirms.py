"""Every button and menu the builders emit: an action that cannot be undone sits behind a
confirm dialog, within Slack's limits, and names what it does; a new action id must be
declared one way or the other here before a test passes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from ganops.bot.blocks import blocks_to_dicts
from ganops.bot.blocks.alarms import AlarmView, alarm_card
from ganops.bot.blocks.data_watch import OfferView, offer_card
from ganops.bot.blocks.home import HomeView, ModelStanding, home_blocks
from ganops.bot.blocks.ops import rollback_card
from ganops.bot.blocks.runs import CardView, RunView, results_card, run_blocks
from ganops.bot.ports import Approval

# Nothing brings these back once clicked (a decision, a started or stopped run, a closed offer).
IRREVERSIBLE = frozenset(
    {
        "approve",
        "reject",
        "run_cancel",
        "alarm_retrain",
        "alarm_ignore",
        "data_retrain",
        "data_dismiss",
    }
)
# Undone by time or by a later click: no dialog in the way.
# Undone by waiting (snooze) or by closing what it opens (the form behind *Start a retrain*).
REVERSIBLE = frozenset({"alarm_snooze", "alarm_snooze_for", "home_retrain"})
# Handled for cards already posted, no longer drawn: the old fixed "Snooze 1h" button.
LEGACY = frozenset({"alarm_snooze"})


def _approval(kind: str, version: str) -> Approval:
    return Approval(
        approval_id=f"apv-{kind}", run_id="r-1", model="cut", version=version,
        model_uri=f"models:/ganops-cut/{version}", kind=kind,  # type: ignore[arg-type]
        requested_by="U1", state="pending", created_at=1.7e9, expires_at=1.7e9 + 3600,
    )  # fmt: skip


def _alarm(state: str) -> AlarmView:
    return AlarmView(
        episode_id="drift-cut-v7-1a2b3c4d", model="cut", version="7", state=state, score=1.8,
        peak_score=2.1, features={"brightness": 2.0}, opened_at=1.7e9, updated_at=1.7e9,
        snoozed_until=1.7e9 + 3600 if state == "snoozed" else None,
    )  # fmt: skip


def every_card() -> dict[str, list[dict[str, Any]]]:
    """One of each card and state that carries buttons."""
    card = CardView(
        run_id="r-1", model="cut", version="7", requested_by="U1", metrics={"deploy_score": 0.7},
        champion_metrics={"deploy_score": 0.6}, champion_version="5",
    )  # fmt: skip
    home = HomeView(
        user="U2",
        runs=[RunView("r-2", "cut", "U1", state="running")],
        approvals=[_approval("deploy", "7"), _approval("rollback", "5")],
        approver=True,
        models=[ModelStanding("cut")],
        alarms=[_alarm("firing")],
    )
    offer = OfferView("off-1", "cut", "5", "sha256:" + "a" * 64, "s3://photos", 42)
    cards = {
        "run going": run_blocks(RunView("r-1", "cut", "U1", state="running")),
        "results card": results_card(card, "apv-1"),
        "rollback card": rollback_card("cut", "5", "7", "U1", "apv-2"),
        "home": home_blocks(home),
        "alarm firing": alarm_card(_alarm("firing")),
        "alarm snoozed": alarm_card(_alarm("snoozed")),
        "new data offer": offer_card(offer),
    }
    return {name: blocks_to_dicts(blocks) for name, blocks in cards.items()}


def _elements(node: Any) -> Iterator[dict[str, Any]]:
    """Every interactive element anywhere in a block tree (actions, accessories, fields)."""
    if isinstance(node, dict):
        if "action_id" in node:
            yield node
        for value in node.values():
            yield from _elements(value)
    elif isinstance(node, list):
        for item in node:
            yield from _elements(item)


def test_every_irreversible_action_has_a_confirm_and_every_action_is_declared() -> None:
    seen: set[str] = set()
    for name, blocks in every_card().items():
        for element in _elements(blocks):
            action = element["action_id"]
            seen.add(action)
            assert action in IRREVERSIBLE | REVERSIBLE, f"{name}: declare {action!r} above"
            if action in IRREVERSIBLE:
                confirm = element.get("confirm")
                assert confirm, f"{name}: {action} has no confirm"
                assert len(confirm["title"]["text"]) <= 100
                assert len(confirm["text"]["text"]) <= 300
                assert len(confirm["confirm"]["text"]) <= 30
                assert len(confirm["deny"]["text"]) <= 30
    assert seen == (IRREVERSIBLE | REVERSIBLE) - LEGACY  # each declared action was walked


def test_dialogs_name_what_they_decide() -> None:
    cards = every_card()

    def confirms(name: str) -> dict[str, str]:
        return {
            e["action_id"]: e["confirm"]["title"]["text"]
            for e in _elements(cards[name])
            if "confirm" in e
        }

    assert confirms("results card") == {"approve": "Deploy cut v7?", "reject": "Reject cut v7?"}
    rollback = confirms("rollback card")
    assert rollback["approve"] == "Roll back cut from v7 to v5?"
    assert "deploy" not in rollback["approve"].lower()
    assert rollback["reject"] == "Reject the rollback of cut?"
    [button] = [e for e in _elements(cards["rollback card"]) if e["action_id"] == "approve"]
    assert button["text"]["text"] == "Approve rollback"
    home = [e["confirm"]["title"]["text"] for e in _elements(cards["home"]) if "confirm" in e]
    assert "Deploy cut v7?" in home
    assert "Roll back cut to v5?" in home
    alarm = confirms("alarm firing")
    assert alarm == {
        "alarm_retrain": "Retrain cut now?",
        "alarm_ignore": "Ignore this drift episode?",
    }


def test_an_outside_model_name_cannot_break_a_dialog() -> None:
    blocks = blocks_to_dicts(rollback_card("<!channel>" + "m" * 200, "5", "7", "U1", "apv-3"))
    for element in _elements(blocks):
        confirm = element["confirm"]
        assert len(confirm["title"]["text"]) <= 100
        assert "<!channel>" not in confirm["title"]["text"]
        assert "<!channel>" not in confirm["text"]["text"]


def test_a_day_long_snooze_says_which_day_it_ends() -> None:
    from dataclasses import replace

    from ganops.bot.blocks.alarms import alarm_thread_note

    base = _alarm("snoozed")
    hour = str(blocks_to_dicts(alarm_card(base)))
    day = str(blocks_to_dicts(alarm_card(replace(base, snoozed_until=base.updated_at + 86400))))
    weekday = time.strftime("%a", time.localtime(base.updated_at + 86400))
    assert f"until {weekday} " in day
    assert f"until {weekday} " not in hour
    assert (
        alarm_thread_note("snooze", "U1", snooze_s=86400) == "<@U1> snoozed this alarm for 1 day."
    )
