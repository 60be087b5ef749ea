"""The App Home tab: runs in flight, pending approvals, each model's champion and challenger,
open drift alarms. Pure: a `HomeView` in, a typed `View` out.

Approve / Reject here are the results card's own buttons (same action ids, value = the
approval id only), so `bot.listeners.approvals` and `ApprovalBook.decide` handle them as
card clicks; they are drawn only for approvers, and the decision is checked on the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
)
from slack_sdk.models.views import View

from ganops.bot.blocks.alarms import AlarmView, moved_features
from ganops.bot.blocks.approvals import hhmm, label
from ganops.bot.blocks.common import section
from ganops.bot.blocks.runs import (
    DecisionSubject,
    RunView,
    approval_buttons,
    run_link,
    run_text,
)
from ganops.bot.ports import Approval, ModelVersionInfo

# A Home view holds at most 100 blocks; each list is cut well before that.
LIST_LIMIT = 10
START_RETRAIN = "home_retrain"  # the button's action id: opens the /retrain form


@dataclass(frozen=True)
class ModelStanding:
    """A model's champion and challenger, None where the alias is unset."""

    model: str
    champion: ModelVersionInfo | None = None
    challenger: ModelVersionInfo | None = None


@dataclass(frozen=True)
class HomeView:
    """What one user's Home tab shows. `problems` are upstream failures (MLflow down…): said
    once at the top; the sections that did not depend on them still show."""

    user: str
    runs: Sequence[RunView] = ()
    approvals: Sequence[Approval] = ()
    approver: bool = False  # draw Approve / Reject
    models: Sequence[ModelStanding] = ()
    alarms: Sequence[AlarmView] = ()
    problems: Sequence[str] = ()


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def _runs(runs: Sequence[RunView]) -> list[Block]:
    if not runs:
        return [_context("No run in flight. Type `/retrain` in a channel to start one.")]
    return [section(f"{run_text(r)}\n{run_link(r.run_id, r.url)}") for r in runs[:LIST_LIMIT]]


def _approvals(approvals: Sequence[Approval], approver: bool) -> list[Block]:
    if not approvals:
        return [_context("Nothing waits for a decision.")]
    blocks: list[Block] = []
    for a in approvals[:LIST_LIMIT]:
        votes = f" · approved so far by <@{a.approvers[0]}>" if a.approvers else ""
        blocks.append(
            section(
                f"*{label(a).capitalize()}* requested by <@{a.requested_by}>{votes}\n"
                f"expires at {hhmm(a.expires_at)} · `{a.approval_id}`"
            )
        )
        if approver:
            blocks.append(
                approval_buttons(a.approval_id, DecisionSubject(a.kind, a.model, a.version))
            )
    if not approver:
        blocks.append(_context("Only approvers can decide; they see Approve / Reject here."))
    return blocks


def _version(info: ModelVersionInfo | None) -> str:
    if info is None:
        return "—"
    score = "no score" if info.deploy_score is None else f"deploy score {info.deploy_score:.4f}"
    return f"v{info.version} ({score})"


def _models(models: Sequence[ModelStanding]) -> list[Block]:
    if not models:
        return [_context("No model to show.")]
    lines = [
        f"*{m.model}*  champion {_version(m.champion)} · challenger {_version(m.challenger)}"
        for m in models
    ]
    return [section("\n".join(lines))]


def _alarms(alarms: Sequence[AlarmView]) -> list[Block]:
    if not alarms:
        return [_context("No open drift alarm.")]
    blocks: list[Block] = []
    for a in alarms[:LIST_LIMIT]:
        moved = ", ".join(name for name, _ in moved_features(a.features, 3)) or "—"
        blocks.append(
            section(
                f":rotating_light: *{a.model} v{a.version}* {a.state} since {hhmm(a.opened_at)} · "
                f"score {a.score:.2f} (peak {a.peak_score:.2f}, >1 is drift) · moved: {moved}"
            )
        )
    return blocks


def home_blocks(view: HomeView) -> list[Block]:
    blocks: list[Block] = [
        HeaderBlock(text="ganops: continuous training of the GAN"),
        ActionsBlock(
            block_id="home_start",
            elements=[
                ButtonElement(
                    text="Start a retrain", action_id=START_RETRAIN, value="form", style="primary"
                )
            ],
        ),
    ]
    if view.problems:
        blocks.append(section("\n".join(f":warning: {p}" for p in view.problems)))
    sections: tuple[tuple[str, list[Block]], ...] = (
        ("Runs in flight", _runs(view.runs)),
        ("Pending approvals", _approvals(view.approvals, view.approver)),
        ("Models", _models(view.models)),
        ("Drift alarms", _alarms(view.alarms)),
    )
    for title, body in sections:
        blocks += [DividerBlock(), section(f"*{title}*"), *body]
    return blocks


def home_view(view: HomeView) -> View:
    return View(type="home", blocks=home_blocks(view))


__all__ = ["LIST_LIMIT", "START_RETRAIN", "HomeView", "ModelStanding", "home_blocks", "home_view"]
