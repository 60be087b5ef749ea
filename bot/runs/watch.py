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
from pathlib import Path

from bot.approvals.rollout import SYSTEM
from bot.blocks.runs import (
    duration,
    failure_blocks,
    failure_text,
    gated_text,
    run_blocks,
    run_text,
)
from bot.ports import RunStatus, UpstreamError
from bot.runs.record import RunRow
from bot.runs.results import post_results
from bot.runs.start import post_keyed, post_run_message, rendered, view_of
from bot.services import Services

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
        slack, runbook = self.services.slack, self.services.runbook
        if row.message_ts is None:  # the bot died between recording the run and posting
            post_run_message(slack, runbook, row, view_of(row, None, self.clock()))
            row = runbook.get(row.run_id) or row
        message_ts = row.message_ts or ""
        status = self.services.launcher.status(row.run_id)
        self._failures.pop(row.run_id, None)
        if not status.final and self._timed_out(row, status):
            self._cancel_timed_out(row)
            status = self.services.launcher.status(row.run_id)
        view = view_of(row, status, self.clock())
        text, blocks = run_text(view), run_blocks(view)
        fingerprint = rendered(text, blocks)
        on_screen = fingerprint == row.last_rendered
        if not on_screen and self.limiter.allow(row.channel):
            slack.chat_update(channel=row.channel, ts=message_ts, text=text, blocks=blocks)
            runbook.update(row.run_id, last_rendered=fingerprint, state=status.state)
            on_screen = True
        elif status.state != row.state:
            runbook.update(row.run_id, state=status.state)
        if status.final:
            self._finish(row, status)
            if on_screen:  # settle only once the final state is what the channel shows
                runbook.update(
                    row.run_id, settled=1, finished_at=status.finished_at or self.clock()
                )

    def _finish(self, row: RunRow, status: RunStatus) -> None:
        """Post the outcome. Every post is keyed, so repeating this (next tick, after a
        restart) never posts twice."""
        slack, runbook = self.services.slack, self.services.runbook
        view = view_of(row, status, self.clock())
        if status.state == "failed":
            post_keyed(
                slack,
                runbook,
                f"{row.run_id}:failed",
                row.channel,
                row.message_ts,
                failure_text(view),
                failure_blocks(view),
            )
        elif status.state == "gated":
            post_keyed(
                slack, runbook, f"{row.run_id}:gated", row.channel, row.message_ts, gated_text(view)
            )
        elif status.state == "awaiting_approval":
            post_results(self.services, row, status, self.files_dir / row.run_id)
        elif status.state == "deployed":
            post_results(self.services, row, status, self.files_dir / row.run_id)
            self._auto_deploy(row.run_id)

    def _auto_deploy(self, run_id: str) -> None:
        """The run asked for auto_deploy=true and passed the gate: that counts as the
        requester's approval, checked again here (policy may have changed since the ack), on
        the approvals path. Under the two-person rule the card then waits for one more."""
        from bot.approvals.jobs import show_decision

        book, row = self.services.approvals, self.services.runbook.get(run_id)
        if book is None or row is None or row.approval_id is None:
            return
        pending = book.get(row.approval_id)
        if pending is None or pending.state != "pending" or row.requested_by in pending.approvers:
            return  # decided or voted already (an earlier tick, or before a restart)
        outcome = book.decide(
            row.approval_id, row.requested_by, "approve", path="policy", requester_vote=True
        )
        show_decision(book, self.services.slack, outcome)

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
        if count == STATUS_FAILURES_BEFORE_NOTICE and row.message_ts:
            self.services.slack.chat_postMessage(
                channel=row.channel,
                thread_ts=row.message_ts,
                text=f":warning: I cannot read this run's status right now ({exc}); still trying.",
            )
