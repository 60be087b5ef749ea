"""Canary posts in the approval card's thread: each step's comparison with the stable version,
and Promote now / Roll back (approver-only, each behind a confirm); the end, in the thread
and, for a rollback, in the channel too. Pure: a `CanaryView` in, blocks out."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
)

from ganops.bot.blocks.common import at, confirm_dialog, escape, literal, section

PROMOTE_ACTION = "canary_promote"
ROLLBACK_ACTION = "canary_rollback"
CANARY_ACTIONS = (PROMOTE_ACTION, ROLLBACK_ACTION)

Moment = Literal["step", "held", "promoted", "rolled_back", "superseded"]


@dataclass(frozen=True)
class CanaryView:
    """What a canary post shows. `judgement` is the analysis as stored: `outcome`, `reasons`
    (one line each) and `rows` (`metric`, `canary`, `stable`, `limit`, `ok`)."""

    canary_id: str
    model: str
    version: str
    stable_version: str | None
    steps: tuple[int, ...]
    step: int  # index into steps of the share the canary has now
    moment: Moment
    judgement: Mapping[str, Any] | None = None
    next_at: float | None = None  # when the next verdict is due (step posts)
    by: str | None = None  # who ended it: a user id, or None for the bot itself
    reason: str | None = None  # why it ended
    thresholds: Sequence[str] = field(default_factory=tuple)  # "GANOPS_…=value" lines

    @property
    def percent(self) -> int:
        return self.steps[self.step]


def canary_text(view: CanaryView) -> str:
    """The notification text (and what screen readers say)."""
    what = f"{view.model} v{view.version}"
    if view.moment == "promoted":
        return f"Canary {what} promoted: it serves all the traffic and is the champion now."
    if view.moment == "rolled_back":
        return f"Canary {what} rolled back: {view.reason or 'no reason given'}"
    if view.moment == "superseded":
        return f"Canary {what} stopped: {view.reason or 'a newer deploy replaced it'}"
    if view.moment == "held":
        return f"Canary {what} held at {view.percent}%: not enough traffic for a verdict."
    return f"Canary {what} at {view.percent}% of the traffic."


def canary_blocks(view: CanaryView) -> list[Block]:
    blocks: list[Block] = [section(_headline(view))]
    table = _table(view.judgement)
    if table:
        blocks.append(section(table))
    reasons = [escape(r) for r in (view.judgement or {}).get("reasons") or []]
    if reasons and view.moment not in ("promoted", "rolled_back"):  # a rollback says why above
        blocks.append(section("\n".join(f"• {r}" for r in reasons[:8])))
    if view.moment in ("step", "held"):
        blocks.append(canary_buttons(view))
    if view.thresholds:
        limits = " · ".join(escape(t) for t in view.thresholds)
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"Limits: {limits}")]))
    return blocks


def canary_buttons(view: CanaryView) -> ActionsBlock:
    """They carry only the canary id; who may press them is checked on the server."""
    what = f"{view.model} v{view.version}"
    stable = f"v{view.stable_version}" if view.stable_version else "the stable version"
    promote = confirm_dialog(
        title=f"Promote {what} now?",
        text=f"Skips the remaining steps: {escape(what)} takes all the traffic at once and "
        f"becomes the champion; {escape(stable)} stops serving.",
        confirm="Promote",
        deny="Keep judging",
    )
    rollback = confirm_dialog(
        title=f"Roll back {what}?",
        text=f"{escape(stable)} takes all the traffic again and stays the champion; "
        f"{escape(what)} stops serving.",
        confirm="Roll back",
        deny="Keep judging",
        danger=True,
    )
    return ActionsBlock(
        block_id=f"canary:{view.canary_id}:{view.step}",
        elements=[
            ButtonElement(text="Promote now", action_id=PROMOTE_ACTION, value=view.canary_id,
                          style="primary", confirm=promote),
            ButtonElement(text="Roll back", action_id=ROLLBACK_ACTION, value=view.canary_id,
                          style="danger", confirm=rollback),
        ],
    )  # fmt: skip


def _headline(view: CanaryView) -> str:
    what = f"*{escape(view.model)} v{escape(view.version)}*"
    stable = f"v{escape(view.stable_version)}" if view.stable_version else "the stable version"
    steps = " → ".join(f"*{p}%*" if i == view.step else f"{p}%" for i, p in enumerate(view.steps))
    by = at(view.by) if view.by else "the analysis"
    if view.moment == "promoted":
        return (
            f":white_check_mark: Canary {what} promoted by {by}: it takes all the traffic "
            f"and the `champion` alias moved to it. ({steps})"
        )
    if view.moment == "rolled_back":
        return (
            f":rewind: Canary {what} rolled back by {by}: {stable} takes all the traffic "
            f"again and stays the champion.\n*Why:* {escape(view.reason or '—')}"
        )
    if view.moment == "superseded":
        return f":fast_forward: Canary {what} stopped: {escape(view.reason or '—')}"
    step = f"step {view.step + 1} of {len(view.steps)}"
    head = f":hatching_chick: Canary {what}, {step}: *{view.percent}%* of the traffic, {stable} the rest. ({steps})"
    if view.moment == "held":
        return (
            head + "\n:hourglass: Not enough traffic for a verdict: held at this share. "
            "It is judged again at the end of each step; an approver may promote or roll back."
        )
    outcome = (view.judgement or {}).get("outcome")
    verdict = {"pass": "passed", "inconclusive": "no verdict yet"}.get(str(outcome), "")
    if view.next_at is not None:
        nxt = view.steps[min(view.step + 1, len(view.steps) - 1)]
        when = time.strftime("%H:%M", time.gmtime(view.next_at))
        head += f"\nNext: *{nxt}%* at {when} UTC if the analysis passes"
        head += f" (so far: {verdict})." if verdict else "."
    return head


def _table(judgement: Mapping[str, Any] | None) -> str:
    """The comparison as a fixed-width table (metric, canary, stable, limit, ok)."""
    rows = (judgement or {}).get("rows") or []
    if not rows:
        return ""
    lines = [f"{'':3}{'metric':<20}{'canary':>11}{'stable':>11}{'limit':>12}"]
    for r in rows:
        mark = "ok" if r.get("ok") else ("--" if r.get("ok") is None else "XX")
        lines.append(
            f"{mark:<2}{_cell(r.get('metric'), 21, left=True)}{_cell(r.get('canary'), 11)}"
            f"{_cell(r.get('stable'), 11)}{_cell(r.get('limit'))}"
        )
    return "```" + "\n".join(lines) + "```"


def _cell(value: object, width: int = 12, *, left: bool = False) -> str:
    text = "—" if value is None else str(value)
    text = text.replace("`", "ˋ")[: width - 1]
    return f" {text:<{width - 1}}" if left else f"{text:>{width}}"


def thresholds_lines(settings: Mapping[str, object]) -> list[str]:
    """`GANOPS_…=value` for the context line."""
    return [f"{k}={v}" for k, v in settings.items()]


__all__ = [
    "CANARY_ACTIONS",
    "PROMOTE_ACTION",
    "ROLLBACK_ACTION",
    "CanaryView",
    "canary_blocks",
    "canary_buttons",
    "canary_text",
    "literal",
    "thresholds_lines",
]
