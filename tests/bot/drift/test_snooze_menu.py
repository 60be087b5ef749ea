"""The alarm's Snooze menu (1 h, 4 h, 1 d) through the real Bolt app over signed HTTP: the
chosen length is the one applied, a forged option is refused with a clear message and changes
nothing, a non-approver is refused, and the old fixed "Snooze 1h" button of cards already
posted still works."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ganops.bot.blocks.alarms import SNOOZE_MENU_ACTION, snooze_option_value
from ganops.bot.drift.watch import AlarmBook, render_card
from ganops.bot.ports import DriftAlert
from tests.bot.drift.stack import action_ids
from tests.fakes.approvals import MemoryRegistry
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import ALICE, BOB, Bot, eventually, make_services, start_bot
from tests.fakes.slack import CHANNEL as BOT_CHANNEL

MALLORY = "U0MALLORY"


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[Bot]:
    launcher = ScriptedLauncher(url_base="http://kfp.test")
    registry = MemoryRegistry()
    registry.add("cut", "3")
    bot = start_bot(
        tmp_path,
        launcher,
        lambda s: make_services(s, launcher, registry=registry),
        GANOPS_APPROVERS=f"{ALICE},{BOB}",
    )
    yield bot
    bot.stop()


def post_card(bot: Bot) -> tuple[AlarmBook, str, str]:
    book = AlarmBook(bot.services.store)
    alert = DriftAlert(model="cut", version="3", score=2.5, features={"brightness": 3.0})
    episode = book.open(alert, BOT_CHANNEL).episode_id
    render_card(book, bot.services.slack, episode, BOT_CHANNEL)
    ts = book.row_meta(episode)[1]
    assert ts is not None
    return book, episode, ts


def choose(bot: Bot, value: str, user: str, ts: str) -> None:
    """What Slack posts when someone picks an option of the card's menu."""
    message = next(m for m in bot.slack.messages(BOT_CHANNEL) if m["ts"] == ts)
    option = {"text": {"type": "plain_text", "text": value}, "value": value}
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": "T_TEST", "domain": "test"},
        "user": {"id": user, "username": user.lower(), "team_id": "T_TEST"},
        "api_app_id": "A_TEST",
        "container": {"type": "message", "message_ts": ts, "channel_id": BOT_CHANNEL},
        "trigger_id": f"pick-{time.time()}",
        "channel": {"id": BOT_CHANNEL, "name": "ganops"},
        "message": message,
        "response_url": bot.slack.response_url(BOT_CHANNEL, user, ts),
        "actions": [
            {
                "type": "static_select",
                "action_id": SNOOZE_MENU_ACTION,
                "block_id": "alarm:x",
                "selected_option": option,
                "action_ts": str(time.time()),
            }
        ],
    }
    assert bot.interact(payload).status_code == 200


def settle(bot: Bot) -> None:
    eventually(lambda: bot.executor.busy == 0)


def audit(bot: Bot) -> list[tuple[str, str, str]]:
    return [(r.actor, r.action, r.outcome) for r in bot.services.store.list_audit(50)]


def test_the_card_offers_the_menu_and_four_hours_means_four_hours(bot: Bot) -> None:
    book, episode, ts = post_card(bot)
    card = next(m for m in bot.slack.messages(BOT_CHANNEL) if m["ts"] == ts)
    assert action_ids(card) == ["alarm_retrain", SNOOZE_MENU_ACTION, "alarm_ignore"]
    before = time.time()
    choose(bot, snooze_option_value("4h", episode), BOB, ts)
    settle(bot)
    view = book.get(episode)
    assert view is not None
    assert view.state == "snoozed"
    assert view.snoozed_until is not None
    assert before + 4 * 3600 - 5 <= view.snoozed_until <= time.time() + 4 * 3600
    notes = [m["text"] for m in bot.slack.messages(BOT_CHANNEL) if m.get("thread_ts") == ts]
    assert any("snoozed this alarm for 4 hours" in n for n in notes)
    assert (BOB, "drift_alarm", "snoozed") in audit(bot)


def test_a_forged_length_is_refused_and_changes_nothing(bot: Bot) -> None:
    book, episode, ts = post_card(bot)
    for forged in (f"99h:{episode}", "1h:", f"86400:{episode}", "nonsense"):
        choose(bot, forged, ALICE, ts)
    settle(bot)
    notes = bot.slack.ephemerals(ALICE)
    assert len(notes) == 4
    assert all("not one I offer" in n["text"] for n in notes)
    view = book.get(episode)
    assert view is not None
    assert view.state == "firing"
    assert [o for a, act, o in audit(bot) if a == ALICE and act == "snooze"] == ["refused"] * 4


def test_a_non_approver_is_refused(bot: Bot) -> None:
    book, episode, ts = post_card(bot)
    choose(bot, snooze_option_value("1d", episode), MALLORY, ts)
    [note] = bot.slack.wait_for(lambda s: s.ephemerals(MALLORY))
    assert "Only approvers may snooze" in note["text"]
    settle(bot)
    assert book.get(episode).state == "firing"  # type: ignore[union-attr]


def test_the_old_one_hour_button_still_snoozes_for_an_hour(bot: Bot) -> None:
    book, episode, ts = post_card(bot)
    before = time.time()
    assert bot.click("alarm_snooze", episode, BOB, ts).status_code == 200
    settle(bot)
    view = book.get(episode)
    assert view is not None
    assert view.state == "snoozed"
    assert view.snoozed_until is not None
    assert before + 3600 - 5 <= view.snoozed_until <= time.time() + 3600
    notes = [m["text"] for m in bot.slack.messages(BOT_CHANNEL) if m.get("thread_ts") == ts]
    assert any("snoozed this alarm for 1 hour." in n for n in notes)
