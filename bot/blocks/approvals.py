"""Pure builders for approvals: the decided card, the decision line, the deploy result message,
and the one-line texts that every path (buttons, `/ganops`, CLI) shows. No I/O.

The results card itself is the bot's (`bot.blocks`); a decision re-renders it from the blocks
as posted: the Approve/Reject buttons go, a context line says who decided and when.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from ganops.bot.blocks.common import at, escape
from ganops.bot.ports import Approval, DeployResult
from ganops.bot.store import AuditRow

DECISION_ACTIONS = ("approve", "reject")
DECISION_BLOCK_ID = "ganops_decision"


def hhmm(ts: float) -> str:
    """A time as people read it on a card: 14:02 (the bot's local time)."""
    return time.strftime("%H:%M", time.localtime(ts))


def label(a: Approval) -> str:
    """ "deploy of cut v7" / "rollback to cut v5"."""
    what = "rollback to" if a.kind == "rollback" else "deploy of"
    return f"{what} {a.model} v{a.version}"


def mention(user: str) -> str:
    """A Slack mention, except for the policy actor, which is no Slack user."""
    return "policy (auto_deploy=true)" if user == "auto_deploy" else at(user)


def who_decided(a: Approval) -> str:
    """ "approved by <@U1> at 14:02", "expired at 09:00", "superseded at 10:30"."""
    if a.state == "expired":
        return f"expired at {hhmm(a.decided_at or a.expires_at)}"
    by = ""
    if a.state == "approved" and len(a.approvers) > 1:
        by = " by " + " and ".join(mention(u) for u in a.approvers)
    elif a.decided_by and a.state not in ("superseded", "stale"):
        by = f" by {mention(a.decided_by)}"
    at = f" at {hhmm(a.decided_at)}" if a.decided_at else ""
    return f"{a.state}{by}{at}"


def decision_text(a: Approval, result: DeployResult | None = None) -> str:
    """The card's decision line: ":white_check_mark: Approved by <@U1> at 14:02 · live in 3.1 s".
    An approved card without a deploy result says the deploy is running."""
    icon = {
        "approved": ":white_check_mark:",
        "rejected": ":no_entry_sign:",
        "expired": ":hourglass:",
        "superseded": ":fast_forward:",
        "stale": ":warning:",
    }.get(a.state, ":hourglass_flowing_sand:")
    if a.state == "pending":
        votes = " and ".join(at(u) for u in a.approvers)
        return f"{icon} Approved by {votes}; waiting for a second approver"
    line = who_decided(a)
    line = f"{icon} {line[0].upper()}{line[1:]}"
    if a.state == "expired":
        line += " (rejected: nobody decided in time)"
    elif a.state == "superseded":
        line += " by a newer request for this model"
    elif a.state == "stale":
        was = (
            f"v{escape(a.expected_champion)}" if a.expected_champion else "the champion it replaced"
        )
        line += (
            f": {was} is no longer the champion (a newer deploy came first), so nothing was "
            f"deployed. Ask again with `/ganops rollback {escape(a.model)} {escape(a.version)}`"
        )
    elif a.state == "approved" and result is None:
        line += f" · deploying v{escape(a.version)}…"
    elif a.state == "approved" and result is not None:
        line += " · " + deploy_summary(result)
    return line


def deploy_summary(result: DeployResult) -> str:
    """A few words for the card; the thread reply has the whole story."""
    if result.ok and result.canary_percent is not None:
        return f"v{escape(result.version)} canary at {result.canary_percent}% (steps in the thread)"
    if result.ok:
        return f"v{escape(result.version)} live in {result.seconds:.1f} s"
    if result.rolled_back:
        return f"deploy failed, rolled back to v{escape(result.previous_version or '?')}"
    return "deploy failed"


def decision_context(a: Approval, result: DeployResult | None = None) -> ContextBlock:
    return ContextBlock(
        block_id=DECISION_BLOCK_ID,
        elements=[MarkdownTextObject(text=decision_text(a, result))],
    )


def decided_card(
    blocks: Sequence[dict[str, Any]], a: Approval, result: DeployResult | None = None
) -> list[dict[str, Any]]:
    """The card as posted, with the decision buttons removed once decided and the decision
    line (re)placed at the bottom. Other buttons (links) stay. Idempotent."""
    out: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("block_id") == DECISION_BLOCK_ID:
            continue
        if block.get("type") == "actions" and a.state != "pending":
            kept = [
                e for e in block.get("elements", []) if e.get("action_id") not in DECISION_ACTIONS
            ]
            if not kept:
                continue
            block = {**copy.deepcopy(block), "elements": kept}
        out.append(block)
    if a.state != "pending" or a.approvers:
        out.append(decision_context(a, result).to_dict())
    return out


def fallback_card(a: Approval, result: DeployResult | None = None) -> list[dict[str, Any]]:
    """When the posted blocks are unknown: a short card naming the version and the decision."""
    title = SectionBlock(text=MarkdownTextObject(text=f"*{escape(label(a).capitalize())}*"))
    return [title.to_dict(), decision_context(a, result).to_dict()]


def deploy_result_text(a: Approval, result: DeployResult) -> str:
    """The thread reply under the card: rollout status and the time it took. The model,
    versions and the deployer's message (Kubernetes' words) are shown as literal text."""
    took = f"{result.seconds:.1f} s"
    a = replace(a, model=escape(a.model), version=escape(a.version))
    result = replace(
        result,
        message=escape(result.message),
        previous_version=result.previous_version and escape(result.previous_version),
    )
    if result.ok and result.canary_percent is not None:
        beside = f" beside v{result.previous_version}" if result.previous_version else ""
        return (
            f":hatching_chick: {a.model} v{a.version} is live as a canary{beside}: "
            f"{result.message}. Each step is judged in this thread; `champion` moves to "
            f"v{a.version} only when it reaches 100%."
        )
    if result.ok:
        prev = f" (was v{result.previous_version})" if result.previous_version else ""
        return (
            f":rocket: Deployed {a.model} v{a.version}{prev} in {took}: {result.message}. "
            f"`champion` now points at v{a.version}."
        )
    if result.rolled_back:
        back = f"v{result.previous_version}" if result.previous_version else "the previous version"
        return (
            f":rewind: Deploy of {a.model} v{a.version} failed after {took} and was rolled "
            f"back; {back} keeps serving. {result.message}. The aliases did not move."
        )
    return (
        f":x: Deploy of {a.model} v{a.version} failed after {took}: {result.message}. "
        "The aliases did not move."
    )


def deploy_result_blocks(a: Approval, result: DeployResult) -> list[Block]:
    return [SectionBlock(text=MarkdownTextObject(text=deploy_result_text(a, result)))]


def approval_line(a: Approval) -> str:
    """One line per approval for `ganops approvals list` and `/ganops approvals`."""
    state = a.state if a.state == "pending" else who_decided(a)
    votes = f" votes={','.join(a.approvers)}" if a.approvers and a.state == "pending" else ""
    return (
        f"{a.approval_id}  {label(a)}  by {a.requested_by}  {state}{votes}"
        f"  (expires {time.strftime('%Y-%m-%d %H:%M', time.localtime(a.expires_at))})"
    )


def audit_line(row: AuditRow) -> str:
    """One line per audit row, for `/ganops audit` and `ganops approvals audit`."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.ts))
    detail = ", ".join(f"{k}={v}" for k, v in row.detail.items() if v not in (None, "", {}))
    tail = f"  ({detail})" if detail else ""
    via = f"  via {row.path}" if row.path else ""
    return f"{when}  {row.actor}  {row.action}  {row.object}  {row.outcome}{via}{tail}"


def gate_failed_refusal(model: str, version: str, gate_reason: str) -> list[Block]:
    """`/ganops rollback N` to a version its evaluation gate failed."""
    how = f'`/ganops rollback {escape(model)} {escape(version)} force=true reason="…"`'
    text = (
        f":no_entry: {escape(model)} v{escape(version)} failed its evaluation gate "
        f"({escape(gate_reason)}), so I will not ask to roll back to it. If it must serve "
        f"anyway, an approver can ask with {how}; the reason goes on the record."
    )
    return [SectionBlock(text=MarkdownTextObject(text=text))]


def forced_note(user: str, reason: str, gate_reason: str) -> ContextBlock:
    """The line under a rollback card asked for past a failed gate."""
    text = (
        f":warning: Forced past a failed gate by {at(user)}: \u201c{escape(reason)}\u201d "
        f"(the gate said: {escape(gate_reason)})"
    )
    return ContextBlock(elements=[MarkdownTextObject(text=text)])
