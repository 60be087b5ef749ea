"""Cancelling a run: `/ganops cancel [run_id]` and the Cancel button on the run message.

Both come here, so one check through the gate (`Gate.authorize`: the run's requester or an
approver) and one audit row cover them. The launcher cancels the pipeline run; the run watcher then sees the final state,
updates the message and settles the run, as for any other ending.
"""

from __future__ import annotations

from ganops.bot.blocks.ops import refusal_text
from ganops.bot.gate import Gate
from ganops.bot.policy import AuditPath
from ganops.bot.runs.record import RunRow
from ganops.bot.services import Services
from ganops.pipeline.ports import FINAL_STATES


def latest_running(services: Services, user: str) -> RunRow | None:
    """The caller's newest run that has not ended, for `/ganops cancel` without an id."""
    for row in services.runbook.recent(50):
        if row.requested_by == user and row.state not in FINAL_STATES and not row.settled:
            return row
    return None


def cancel_run(
    services: Services, gate: Gate, *, run_id: str | None, user: str, path: AuditPath
) -> str:
    """Cancel `run_id` (None: the caller's latest running run); return what to tell them.

    Raises:
        UpstreamError: the pipeline backend could not cancel it.
    """
    row = services.runbook.get(run_id) if run_id else latest_running(services, user)
    if row is None:
        return f"I know no run `{run_id}`." if run_id else "You have no running run to cancel."
    verdict = gate.authorize(
        actor=user, action="cancel", path=path, requester=row.requested_by, obj=row.run_id
    )
    if verdict.refused:  # audited by the gate
        return refusal_text(verdict.reason)
    if row.state in FINAL_STATES or row.settled:
        return f"Run `{row.run_id}` has already ended ({row.state.replace('_', ' ')})."
    services.launcher.cancel(row.run_id)
    services.store.audit(user, "cancel", row.run_id, "cancelled", {}, path=path)
    if row.message_ts:
        services.slack.chat_postMessage(
            channel=row.channel,
            thread_ts=row.message_ts,
            text=f":black_square_for_stop: <@{user}> cancelled this run.",
        )
    return f"Cancelling run `{row.run_id}`; its message says when it has stopped."
