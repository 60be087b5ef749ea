"""The shell adapter shows the alarm's Snooze menu as numbered choices, and a pick sends what
Slack sends for a menu: the chosen option, not a button value."""

from __future__ import annotations

from ganops.bot.blocks import blocks_to_dicts
from ganops.bot.blocks.alarms import AlarmView, alarm_card, parse_snooze_option
from ganops.bot.local.shell import _action
from ganops.bot.local.shell_render import render


def test_menu_options_are_numbered_choices_and_a_pick_is_a_selected_option() -> None:
    view = AlarmView(
        episode_id="drift-cut-v7-1a2b", model="cut", version="7", state="firing", score=1.5,
        peak_score=1.5, features={"brightness": 2.0}, opened_at=1.7e9, updated_at=1.7e9,
    )  # fmt: skip
    _, buttons = render({"blocks": blocks_to_dicts(alarm_card(view))})
    assert [b.text for b in buttons] == [
        "Retrain now",
        "Snooze 1 hour",
        "Snooze 4 hours",
        "Snooze 1 day",
        "Ignore",
    ]
    pick = _action(buttons[2])
    assert pick["type"] == "static_select"
    assert "value" not in pick
    assert parse_snooze_option(pick["selected_option"]["value"]) == ("4h", "drift-cut-v7-1a2b")
    click = _action(buttons[0])
    assert (click["type"], click["value"]) == ("button", "drift-cut-v7-1a2b")
