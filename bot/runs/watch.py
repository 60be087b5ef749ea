"""The run watcher: follows every unsettled run and keeps its one message current.

Each tick asks the launcher for the status of every run whose outcome is not fully posted
(rebuilt from the `runs` table, so watching resumes after a restart), updates the run message
in place when its text changed (at most one `chat.update` per channel per second, Slack's
rate), and on the final state posts the outcome once: the failing step and error in the
thread, the gate's reason, or the results card (see `bot.runs.results`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from slack_sdk.errors import SlackApiError

from ganops.bot.approvals.rollout import SYSTEM
from ganops.bot.blocks.runs import (
    RunView,
    duration,
    failure_blocks,
    failure_text,
    gated_text,
    run_blocks,
    run_text,
    status_unavailable_text,
)
from ganops.bot.ports import RunStatus, UpstreamError
from ganops.bot.runs.delivery import (
    CHANNEL_GONE,
    MESSAGE_GONE,
    Destination,
    direct_channel,
    is_permanent,
    is_transient,
    slack_error,
)
from ganops.bot.runs.record import RunRow
from ganops.bot.runs.results import post_results
from ganops.bot.runs.start import post_keyed, post_run_message, rendered, view_of
from ganops.bot.services import Services
from ganops.pipeline.ports import UnknownRunError

log = logging.getLogger("ganops.bot")

# After this many failed status polls in a row, say so once in the run's thread.
STATUS_FAILURES_BEFORE_NOTICE = 5


class ChannelLimiter:
    """At most one update per `interval_s` per channel; callers retry on their next tick."""

    def __init__(self, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}

    def allow(self, channel: str) -> bool:
        now = self.clock()
        if now - self._last.get(channel, -1e18) < self.interval_s:
            return False
        self._last[channel] = now
        return True


class RunWatcher:
    def __init__(
        self,
        services: Services,
        files_dir: Path,
        limiter: ChannelLimiter | None = None,
        clock: Callable[[], float] = time.time,
        *,
        run_timeout_s: float | None = None,
    ) -> None:
        self.services = services
        self.run_timeout_s = run_timeout_s
        self.files_dir = files_dir
        self.limiter = limiter or ChannelLimiter()
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        # run id -> Slack's permanent error for its message; rediscovered after a restart by
        # one refused call
        self._detached: dict[str, str] = {}
        self._direct: set[str] = set()  # runs whose outcome goes to the requester's DMs

    def tick(self) -> None:
        """One pass over the unsettled runs; overlapping calls skip instead of doubling posts."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            for row in self.services.runbook.unsettled():
                try:
                    self.follow(row)
                except UpstreamError as exc:
                    self._status_failed(row, exc)
                except Exception:  # one broken run must not stop the others being watched
                    log.exception("watching run %s failed; retrying next tick", row.run_id)
        finally:
            self._lock.release()

    def follow(self, row: RunRow) -> None:
        """One look at one run. Its state is recorded before anything is shown: a message
        that cannot be updated (deleted, archived channel, bot removed) never keeps a run from
        reaching its final state, its card and its approval."""
        slack, runbook = self.services.slack, self.services.runbook
        if row.message_ts is None and row.run_id not in self._detached:
            # the bot died between recording the run and posting, or Slack said no then
            self._deliver(row, lambda: post_run_message(slack, runbook, row, self._view(row)))
            row = runbook.get(row.run_id) or row
        status = self._status(row)
        self._failures.pop(row.run_id, None)
        if not status.final and self._timed_out(row, status):
            self._cancel_timed_out(row)
            status = self._status(row)
        if status.final or status.state != row.state:  # settle first: the store knows
            finished = (
                (row.finished_at or status.finished_at or self.clock()) if status.final else None
            )
            runbook.update(row.run_id, state=status.state, finished_at=finished)
        on_screen = self._show(row, status)
        if status.final:
            self._finish(row, status)
            if on_screen:  # the final state is what the channel shows, or it can show nothing
                runbook.update(row.run_id, settled=1)

    def _view(self, row: RunRow, status: RunStatus | None = None) -> RunView:
        return view_of(row, status, self.clock())

    def _status(self, row: RunRow) -> RunStatus:
        """The launcher's status; a run it no longer knows (deleted in KFP) has failed."""
        try:
            return self.services.launcher.status(row.run_id)
        except UnknownRunError as exc:
            log.warning("run %s is gone from the pipeline backend: %s", row.run_id, exc)
            return RunStatus(
                run_id=row.run_id,
                state="failed",
                request_id=row.request_id,
                model=row.model,
                created_at=row.created_at,
                finished_at=row.finished_at or self.clock(),
                url=row.url,
                params=dict(row.params),
                error=f"The pipeline run no longer exists (deleted from Kubeflow?): {exc}",
            )

    def _show(self, row: RunRow, status: RunStatus) -> bool:
        """Update the run message in place when it changed; True when the channel shows this
        state (or the message is gone for good, so nothing is left to wait for)."""
        if row.run_id in self._detached or not row.message_ts:
            return True
        view = self._view(row, status)
        text, blocks = run_text(view), run_blocks(view)
        fingerprint = rendered(text, blocks)
        if fingerprint == row.last_rendered:
            return True
        if not self.limiter.allow(row.channel):
            return False
        ts = row.message_ts

        def update() -> None:
            self.services.slack.chat_update(channel=row.channel, ts=ts, text=text, blocks=blocks)
            self.services.runbook.update(row.run_id, last_rendered=fingerprint)

        self._deliver(row, update)
        return True

    def _deliver(self, row: RunRow, call: Callable[[], object]) -> None:
        """Run one Slack call for the run message; a permanent refusal detaches the run from
        it (its outcome goes elsewhere, see `_destination`), anything else is raised and the
        next tick tries again."""
        try:
            call()
        except SlackApiError as exc:
            if not is_permanent(exc):
                raise
            error = slack_error(exc)
            log.warning(
                "run %s: its message is unusable (%s); posting elsewhere", row.run_id, error
            )
            self._detached[row.run_id] = error

    def _destination(self, row: RunRow) -> Destination:
        """The run message's thread; a new message in the channel when that message is gone;
        a DM to the requester when the channel takes no posts."""
        error = self._detached.get(row.run_id)
        if error is None and row.message_ts:
            return Destination(row.channel, row.thread_ts)
        if row.run_id not in self._direct and (error is None or error in MESSAGE_GONE):
            return Destination(row.channel, row.thread_ts, fallback=error or "no run message")
        channel = direct_channel(self.services.slack, row.requested_by)
        return Destination(channel, None, fallback=error, direct=True)

    def _finish(self, row: RunRow, status: RunStatus) -> None:
        """Post the outcome where it can go: the run message's thread, else a new message,
        else a DM. Every post is keyed, so repeating this (next tick, after a restart, at the
        next destination) never posts twice."""
        while True:
            try:
                where = self._destination(row)
                self._post_outcome(row, status, where)
                return
            except SlackApiError as exc:
                error = slack_error(exc)
                last_resort = row.run_id in self._direct or (
                    self._detached.get(row.run_id) in CHANNEL_GONE
                )
                # In the DM, anything but a passing fault (no im:write, a deactivated user)
                # means nowhere is left: the run settles without its post.
                if is_transient(exc) or not (last_resort or is_permanent(exc)):
                    raise
                log.warning("run %s: cannot post its outcome here (%s)", row.run_id, error)
                if last_resort:
                    log.error("run %s: its outcome could not be posted anywhere", row.run_id)
                    return
                if where.fallback is None:
                    self._detached[row.run_id] = error
                else:
                    self._direct.add(row.run_id)

    def _post_outcome(self, row: RunRow, status: RunStatus, where: Destination) -> None:
        slack, runbook = self.services.slack, self.services.runbook
        view = self._view(row, status)
        target = row
        if where.fallback is not None:
            # The run message cannot carry the outcome: a new one does, with the outcome in
            # its thread and the card beside it, as under the original.
            moved = post_keyed(
                slack,
                runbook,
                f"{row.run_id}:moved",
                where.channel,
                where.thread_ts,
                run_text(view),
                run_blocks(view),
            )
            target = replace(row, channel=where.channel, thread_ts=where.thread_ts)
            target = replace(target, message_ts=moved)
        anchor = target.message_ts
        if status.state == "failed":
            post_keyed(
                slack,
                runbook,
                f"{row.run_id}:failed",
                target.channel,
                anchor,
                failure_text(view),
                failure_blocks(view),
            )
        elif status.state == "gated":
            key = f"{row.run_id}:gated"
            post_keyed(slack, runbook, key, target.channel, anchor, gated_text(view))
        elif status.state in ("awaiting_approval", "deployed"):
            post_results(self.services, target, status, self.files_dir / row.run_id)
            if status.state == "deployed":
                self._auto_deploy(row.run_id)

    def _auto_deploy(self, run_id: str) -> None:
        """Hand the auto deploy to a worker: a rollout (up to its progress deadline, plus a
        rollback) must never hold up the watch. Without an outbox (tests), inline."""
        outbox = self.services.outbox
        if outbox is None:
            auto_deploy(self.services, run_id)
            return
        outbox.enqueue(AUTO_DEPLOY, f"{AUTO_DEPLOY}:{run_id}", {"run_id": run_id})

    def _timed_out(self, row: RunRow, status: RunStatus) -> bool:
        started = status.created_at or row.created_at
        return self.run_timeout_s is not None and self.clock() - started > self.run_timeout_s

    def _cancel_timed_out(self, row: RunRow) -> None:
        """GANOPS_RUN_TIMEOUT: cancel the run and say so in its thread, once (keyed post)."""
        self.services.launcher.cancel(row.run_id)
        key = f"{row.run_id}:timeout"
        if self.services.runbook.posted(key) is None:
            limit = duration(self.run_timeout_s)
            self.services.store.audit(
                SYSTEM, "cancel", row.run_id, "timeout", {"limit_s": self.run_timeout_s},
                path="job",
            )  # fmt: skip
            text = f":alarm_clock: Run `{row.run_id}` ran past GANOPS_RUN_TIMEOUT ({limit}): cancelled."
            post_keyed(
                self.services.slack, self.services.runbook, key, row.channel, row.message_ts, text
            )

    def _status_failed(self, row: RunRow, exc: UpstreamError) -> None:
        count = self._failures.get(row.run_id, 0) + 1
        self._failures[row.run_id] = count
        log.warning("status of run %s unavailable (%d in a row): %s", row.run_id, count, exc)
        if count != STATUS_FAILURES_BEFORE_NOTICE or not row.message_ts:
            return
        try:
            self.services.slack.chat_postMessage(
                channel=row.channel,
                thread_ts=row.message_ts,
                text=status_unavailable_text(str(exc)),
            )
        except SlackApiError as notice_failed:  # the notice is a courtesy; watching goes on
            log.warning("run %s: could not say so in Slack: %s", row.run_id, notice_failed)


AUTO_DEPLOY = "job:auto_deploy"  # the outbox kind of a deploy the run watcher hands off


def auto_deploy(services: Services, run_id: str) -> None:
    """The run asked for auto_deploy=true and passed the gate: that counts as the
    requester's approval, checked again here (policy may have changed since the ack), on
    the approvals path. Under the two-person rule the card then waits for one more."""
    from ganops.bot.approvals.jobs import show_decision

    book, row = services.approvals, services.runbook.get(run_id)
    if book is None or row is None or row.approval_id is None:
        return
    pending = book.get(row.approval_id)
    if pending is None or pending.state != "pending" or row.requested_by in pending.approvers:
        return  # decided or voted already (an earlier tick, or before a restart)
    outcome = book.decide(
        row.approval_id, row.requested_by, "approve", path="policy", requester_vote=True
    )
    show_decision(book, services.slack, outcome)
