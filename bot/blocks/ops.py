"""Builders for `/ganops` answers, usage errors and short notices. Pure: data in, blocks out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from slack_sdk.models.blocks import Block

from ganops.bot.blocks.approvals import audit_line
from ganops.bot.blocks.common import at, code, code_sections, escape, literal, section
from ganops.bot.blocks.runs import DecisionSubject, approval_buttons, duration, run_link
from ganops.bot.parsing import GANOPS_USAGE, RETRAIN_USAGE
from ganops.bot.ports import Approval, ModelVersionInfo
from ganops.bot.store import AuditRow

HELP_TEXT = f"""*ganops* runs the continuous-training pipeline of the style-transfer GAN.
*/retrain* starts a run; its message follows the run, then a results card asks for a decision.
{code(RETRAIN_USAGE)}
*/ganops* shows and decides:
• `status` champion, challenger, runs going and approvals pending
• `runs [--limit n]` recent runs with their states · `models [cut|fastcut|cyclegan]` registered versions and scores
• `rollback [version]` ask to go back to the previous champion (approvers; needs an approval)
• `cancel [run]` stop a run (yours, or any run for approvers); no id: your latest running run
• `approvers` who may approve · `audit [--limit n]` the last n audit entries
• `approve <id>` / `reject <id>` decide an approval without the buttons
{code(GANOPS_USAGE)}"""


@dataclass(frozen=True)
class RunLine:
    """One run in a listing."""

    run_id: str
    model: str
    state: str
    requested_by: str
    created_at: float
    url: str | None = None


@dataclass(frozen=True)
class ModelStatus:
    """One model's place in `/ganops status`."""

    model: str
    champion: ModelVersionInfo | None
    challenger: ModelVersionInfo | None
    served: str | None = None  # the version the deployer serves now


def text_blocks(text: str) -> list[Block]:
    return [section(text)]


def usage_blocks(problem: str, usage: str) -> list[Block]:
    return [section(f":warning: {escape(problem)}"), section(code(usage))]


def usage_text(problem: str) -> str:
    return f"That did not work: {escape(problem)}"  # echoes what the user typed


def help_blocks(unknown: str | None = None) -> list[Block]:
    blocks: list[Block] = []
    if unknown:
        blocks.append(section(f"I don't know {literal(unknown)}. Here is what I can do:"))
    return [*blocks, section(HELP_TEXT)]


def refusal_text(reason: str) -> str:
    """A policy refusal, told to the one who asked (never the channel)."""
    return f":no_entry_sign: {reason}"


def concurrent_text(model: str, run_id: str) -> str:
    return (
        f":hourglass: A run for {literal(model)} is already going: {literal(run_id)}. "
        "Only one run per model "
        "at a time; try again when it finishes (`/ganops runs`)."
    )


def channel_unusable_text(reason: str) -> str:
    return (
        f":warning: I cannot post in this channel: {escape(reason)}. Nothing was started. "
        "Invite me (`/invite @ganops`) or use the channel I watch, then try again."
    )


def repeat_text(run_id: str) -> str:
    return f"This request already started run {literal(run_id)}; its message is in the channel."


def upstream_text(what: str, error: str) -> str:
    return (
        f":warning: Could not {escape(what)}: {escape(error)}. Nothing was changed; "
        "try again in a minute. "
        "The bot keeps running."
    )


def _version_line(label: str, info: ModelVersionInfo | None) -> str:
    if info is None:
        return f"{label}: none"
    score = "—" if info.deploy_score is None else f"{info.deploy_score:.4f}"
    return f"{label}: v{escape(info.version)} (score {score})"


@dataclass(frozen=True)
class CanaryLine:
    """A running canary as `/ganops status` lists it."""

    model: str
    version: str
    stable_version: str | None
    steps: tuple[int, ...]
    step: int
    held: bool


def status_blocks(
    models: Sequence[ModelStatus],
    active: Sequence[RunLine],
    pending: Sequence[Approval],
    canaries: Sequence[CanaryLine] = (),
) -> list[Block]:
    lines = []
    for m in models:
        served = f", serving v{m.served}" if m.served else ""
        lines.append(
            f"*{escape(m.model)}* — {_version_line('champion', m.champion)}, "
            f"{_version_line('challenger', m.challenger)}{escape(served)}"
        )
    runs = [
        f"• {run_link(r.run_id, r.url)} {literal(r.model)} {escape(r.state)}" for r in active
    ] or ["• none"]
    approvals = [
        f"• {literal(a.approval_id)} {escape(f'{a.kind} {a.model} v{a.version}')} "
        f"by {at(a.requested_by)}"
        for a in pending
    ] or ["• none"]
    judged = [
        f"• {literal(c.model)} v{escape(c.version)} at *{c.steps[c.step]}%* beside "
        f"v{escape(c.stable_version or '?')}, step {c.step + 1} of {len(c.steps)}"
        + (" (held: not enough traffic)" if c.held else "")
        for c in canaries
    ] or ["• none"]
    return [
        section("\n".join(lines) or "No models registered yet."),
        section("*Runs going*\n" + "\n".join(runs)),
        section("*Canaries being judged*\n" + "\n".join(judged)),
        section("*Pending approvals*\n" + "\n".join(approvals)),
    ]


def runs_blocks(runs: Sequence[RunLine], now: float | None = None) -> list[Block]:
    if not runs:
        return [section("No runs yet. Start one with `/retrain`.")]
    now = time.time() if now is None else now
    lines = [
        f"• {run_link(r.run_id, r.url)} {literal(r.model)} *{escape(r.state.replace('_', ' '))}* "
        f"by {at(r.requested_by)}, {duration(now - r.created_at)} ago"
        for r in runs
    ]
    return [section("*Recent runs*\n" + "\n".join(lines))]


def models_blocks(model: str, versions: Sequence[ModelVersionInfo]) -> list[Block]:
    if not versions:
        return [section(f"No versions of {literal(model)} are registered yet.")]
    rows = [("version", "aliases", "score", "registered")]
    for v in versions:
        score = "—" if v.deploy_score is None else f"{v.deploy_score:.4f}"
        when = (
            "—"
            if v.created_at is None
            else time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created_at))
        )
        rows.append((v.version, ",".join(v.aliases) or "—", score, when))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return [section(f"*Registered versions of {literal(model)}*"), *code_sections(table)]


def audit_blocks(rows: Sequence[AuditRow]) -> list[Block]:
    if not rows:
        return [section("The audit log is empty.")]
    lines = "\n".join(audit_line(r) for r in rows)
    return [section(f"*Audit log (newest first, {len(rows)})*"), *code_sections(lines)]


def approvers_blocks(
    users: Sequence[str], groups: Sequence[str], allow_self: bool, required: int
) -> list[Block]:
    who = [at(u) for u in users] + [f"<!subteam^{g}>" for g in groups]
    rules = [
        "self-approval allowed" if allow_self else "no one may approve their own run",
        f"{required} approval{'s' if required > 1 else ''} needed",
    ]
    if not who:
        return [section("No approvers are set: set GANOPS_APPROVERS (Slack user ids).")]
    return [section(f"*Approvers*: {', '.join(who)}\n{'; '.join(rules)}.")]


def rollback_text(model: str, to_version: str, from_version: str | None) -> str:
    current = f" from v{from_version}" if from_version else ""
    return escape(f"Rollback requested: {model}{current} back to v{to_version}")


def rollback_card(
    model: str, to_version: str, from_version: str | None, requested_by: str, approval_id: str
) -> list[Block]:
    """A rollback goes through the same approval path as a deploy: same action ids, opaque
    id; the button and its dialog say "roll back" and name both versions."""
    subject = DecisionSubject("rollback", model, to_version, from_version=from_version)
    return [
        section(
            f":rewind: *{rollback_text(model, to_version, from_version)}* "
            f"(asked by {at(requested_by)}). An approver decides; nothing changes until then."
        ),
        approval_buttons(approval_id, subject),
    ]


def deploy_request_card(
    model: str,
    version: str,
    from_version: str | None,
    requested_by: str,
    approval_id: str,
    *,
    note: str = "",
) -> list[Block]:
    """A deploy asked for outside a run (no results card): the same buttons, opaque id."""
    subject = DecisionSubject("deploy", model, version, from_version=from_version)
    now = f" (v{escape(from_version)} serves now)" if from_version else ""
    extra = f" {escape(note)}" if note else ""
    return [
        section(
            f":package: *Deploy {escape(model)} v{escape(version)}*{now}, asked by "
            f"{at(requested_by)}.{extra} An approver decides; nothing changes until then."
        ),
        approval_buttons(approval_id, subject),
    ]


def channel_pointer_text(command: str, channels: Sequence[str]) -> str:
    """`/retrain` or `/ganops` typed outside the configured channels: where to type it."""
    where = " or ".join(f"<#{c}>" for c in channels)
    return f":point_right: `{command}` works in {where}; please type it there."
