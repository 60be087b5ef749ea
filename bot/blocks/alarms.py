"""Pure Block Kit builders for drift alarms. No I/O: data in, typed blocks out."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    InteractiveElement,
    MarkdownTextObject,
    Option,
    SectionBlock,
    StaticSelectElement,
)

from ganops.bot.blocks.common import at, confirm_dialog, escape, literal

ALARM_ACTIONS = ("alarm_retrain", "alarm_snooze", "alarm_ignore")
# The snooze menu; "alarm_snooze" stays the fixed one-hour button of cards already posted.
SNOOZE_MENU_ACTION = "alarm_snooze_for"
# The lengths on offer, by the key an option carries; the listener accepts no other.
SNOOZE_CHOICES: Mapping[str, tuple[str, float]] = {
    "1h": ("1 hour", 3600.0),
    "4h": ("4 hours", 4 * 3600.0),
    "1d": ("1 day", 86400.0),
}


def snooze_option_value(length: str, episode_id: str) -> str:
    """ "4h:drift-cut-v7-1a2b3c4d": the length and the episode, nothing else."""
    return f"{length}:{episode_id}"


def parse_snooze_option(value: str) -> tuple[str, str] | None:
    """(length key, episode id) of a menu option's value; None for a length not on offer."""
    length, sep, episode_id = value.partition(":")
    if not sep or not episode_id or length not in SNOOZE_CHOICES:
        return None
    return length, episode_id


def snooze_label(seconds: float) -> str:
    """ "1 hour", "4 hours", "1 day"; other lengths (settings) in hours."""
    for label, length in SNOOZE_CHOICES.values():
        if length == seconds:
            return label
    hours = seconds / 3600
    return f"{hours:g} hour{'s' if hours != 1 else ''}"


@dataclass(frozen=True)
class AlarmView:
    """What an alarm card shows; built from an `alarms` row."""

    episode_id: str
    model: str
    version: str
    state: str  # firing | snoozed | ignored | resolved
    score: float
    peak_score: float
    features: Mapping[str, float]
    opened_at: float
    updated_at: float
    resolved_at: float | None = None
    snoozed_until: float | None = None
    acted_by: str | None = None  # who snoozed / ignored / retrained
    retrain_run_id: str | None = None
    no_data_since: float | None = None  # the score stopped coming then; None while it comes
    captured: int | None = None  # captured inputs its retrain trains on
    outcome: str | None = None  # how it ended, or what its retrain came to
    attempts: int = 0  # retrains turned down (gate, failure)


def _hhmm(ts: float) -> str:
    return time.strftime("%H:%M", time.localtime(ts))


def moved_features(features: Mapping[str, float], limit: int = 4) -> list[tuple[str, float]]:
    """The features that moved most, largest first; > 1 means past its own threshold."""
    ranked = sorted(features.items(), key=lambda kv: kv[1], reverse=True)
    return [(name, score) for name, score in ranked[:limit] if score > 0]


def alarm_text(view: AlarmView) -> str:
    """The notification text (shown in notifications and by clients without blocks)."""
    what = escape(f"{view.model} v{view.version}")  # Prometheus labels: not ours
    if view.state == "resolved" and view.no_data_since is not None:
        return f"Closed without data: input drift on {what}"
    if view.state == "resolved":
        # The outcome line is ours, but it names versions that came from labels: escaped.
        return escape(view.outcome) if view.outcome else f"Resolved: input drift on {what}"
    if view.no_data_since is not None:
        return f"Input drift on {what}: no data since {_hhmm(view.no_data_since)}"
    return f"Input drift on {what}: score {view.score:.2f} (&gt;1 is drift)"


def alarm_card(view: AlarmView) -> list[Block]:
    """The alarm card: model and version, the score, the moved features, and the buttons
    while the alarm is open. The score plot is uploaded beside it as a file."""
    icon = {"firing": ":rotating_light:", "snoozed": ":zzz:", "ignored": ":no_bell:"}.get(
        view.state, ":white_check_mark:"
    )
    title = "Input drift" if view.state != "resolved" else "Input drift resolved"
    if view.state == "resolved" and view.no_data_since is not None:
        title = "Input drift closed, no data"  # not "resolved": nobody saw the score fall
    moved = moved_features(view.features)
    feature_lines = (
        "\n".join(f"• {literal(name)} {score:.2f}" for name, score in moved) or "• (none)"
    )
    score = f"{icon} {view.score:.2f} (peak {view.peak_score:.2f})"
    if view.no_data_since is not None:
        score = f":grey_question: no data since {_hhmm(view.no_data_since)} " + (
            f"(last {view.score:.2f}, peak {view.peak_score:.2f})"
        )
    blocks: list[Block] = [
        HeaderBlock(text=f"{title}: {escape(f'{view.model} v{view.version}')}"),
        SectionBlock(
            fields=[
                MarkdownTextObject(text=f"*Score*\n{score}"),
                MarkdownTextObject(text=f"*Since*\n{_hhmm(view.opened_at)}"),
                MarkdownTextObject(text=f"*Features that moved*\n{feature_lines}"),
                MarkdownTextObject(text=f"*Episode*\n{literal(view.episode_id)}"),
            ]
        ),
    ]
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_status_line(view))]))
    if view.state in ("firing", "snoozed") and view.retrain_run_id is None:
        blocks.append(alarm_buttons(view, snoozed=view.state == "snoozed"))
    return blocks


def _status_line(view: AlarmView) -> str:
    who = f" by {at(view.acted_by)}" if view.acted_by else ""
    parts: list[str] = []
    if view.state == "resolved" and view.outcome:
        return escape(view.outcome)
    silent = view.no_data_since is not None
    if view.state == "resolved" and view.resolved_at is not None and silent:
        parts.append(
            f"Closed at {_hhmm(view.resolved_at)} with no data since "
            f"{_hhmm(view.no_data_since or 0)}: the score never came back, so drift is unknown."
        )
    elif view.state == "resolved" and view.resolved_at is not None:
        parts.append(f"Resolved at {_hhmm(view.resolved_at)}; the score is back under 1.")
    elif silent:
        parts.append(
            f"No data since {_hhmm(view.no_data_since or 0)}: the drift score is not reported "
            "(model server down or its scrape failing). This episode goes on when it is back."
        )
    elif view.state == "snoozed" and view.snoozed_until is not None:
        until = view.snoozed_until
        # A day's snooze ends at the same clock time tomorrow: say which day.
        day = (
            time.strftime("%a ", time.localtime(until))
            if until - view.updated_at > 12 * 3600
            else ""
        )
        parts.append(f"Snoozed{who} until {day}{_hhmm(until)}.")
    elif view.state == "ignored":
        parts.append(f"Ignored{who} for this episode; the card still resolves by itself.")
    else:
        parts.append(f"Firing; updated {_hhmm(view.updated_at)}. &gt;1 means the inputs moved.")
    if view.retrain_run_id:
        run = literal(view.retrain_run_id)
        parts.append(f"Retrain started{who}: run {run} (progress in the thread).")
    if view.outcome:
        parts.append(escape(view.outcome))
    return " ".join(parts)


def alarm_buttons(view: AlarmView, snoozed: bool = False) -> ActionsBlock:
    """Retrain now and Ignore (each behind a confirm: neither can be undone) and a snooze
    menu. They carry only the episode id (the menu: a length key too); everything else is
    looked up on the server."""
    episode_id, what = view.episode_id, f"{view.model} v{view.version}"
    retrain = confirm_dialog(
        title=f"Retrain {view.model} now?",
        text=f"Starts a training run to replace {escape(what)}; it uses the trainer until it ends "
        "or is cancelled. The alarm's buttons go, and the run's progress is in the thread.",
        confirm="Retrain",
        deny="Not now",
    )
    ignore = confirm_dialog(
        title="Ignore this drift episode?",
        text=f"No more alerts for {escape(what)} until this episode ends, and its buttons go; "
        "the card still resolves by itself.",
        confirm="Ignore",
        deny="Keep watching",
        danger=True,
    )
    menu = StaticSelectElement(
        placeholder="Snooze…",
        action_id=SNOOZE_MENU_ACTION,
        options=[
            Option(text=f"Snooze {label}", value=snooze_option_value(key, episode_id))
            for key, (label, _) in SNOOZE_CHOICES.items()
        ],
    )
    elements: list[InteractiveElement] = [
        ButtonElement(
            text="Retrain now",
            action_id="alarm_retrain",
            value=episode_id,
            style="primary",
            confirm=retrain,
        ),
        menu,
        ButtonElement(
            text="Ignore",
            action_id="alarm_ignore",
            value=episode_id,
            style="danger",
            confirm=ignore,
        ),
    ]
    if snoozed:
        elements = [elements[0], elements[2]]
    return ActionsBlock(block_id=f"alarm:{episode_id}", elements=elements)


def prometheus_down_text(url: str, error: str, retry_in_s: float) -> str:
    return (
        f":warning: Prometheus at {escape(url)} is unreachable ({escape(error)}). "
        "Drift alarms are paused; "
        f"retrying with backoff (next try in {retry_in_s:.0f} s). I will say when it is back."
    )


def prometheus_back_text(url: str, down_for_s: float) -> str:
    back = f"{down_for_s:.0f} s"
    return f":white_check_mark: Prometheus at {escape(url)} is reachable again after {back}."


def alarm_thread_note(
    kind: str, user: str | None, detail: str = "", snooze_s: float = 3600.0
) -> str:
    who = at(user) if user else "someone"
    notes = {
        "snooze": f"{who} snoozed this alarm for {snooze_label(snooze_s)}.",
        "ignore": f"{who} chose to ignore this episode.",
        "refire": "The snooze ended and the drift is still there.",
        "retrain": f"{who} started a retrain: {detail}",  # detail: mrkdwn the bot built
    }
    return notes.get(kind, detail)


def retrain_data_text(captured: int, needed: int, held_out: int, capture_on: bool) -> str:
    """What a drift retrain trains on, or why it was not started."""
    if not capture_on:
        return (
            "Input capture is off (`GANOPS_CAPTURE_RATE=0`): this retrain uses the champion's "
            "data only, so it cannot learn the new inputs."
        )
    if captured < needed:
        return (
            f":hourglass: Not retraining yet: {captured} inputs captured during this episode, "
            f"{needed} needed (`GANOPS_DRIFT_MIN_CAPTURED`); {needed - captured} missing. "
            "Click again once more traffic has been served."
        )
    return (
        f"Retraining on the champion's data plus {captured - held_out} of the {captured} "
        f"inputs captured during this episode (domain B unchanged); the other {held_out} are "
        "held out, so challenger and champion are judged on the new inputs."
    )


def alarm_summary_lines(views: Sequence[AlarmView]) -> list[str]:
    """One line per alarm, for `/ganops status`."""
    return [
        escape(f"{v.model} v{v.version}: {v.state}, score {v.score:.2f}")
        + f" since {_hhmm(v.opened_at)}"
        for v in views
    ]
