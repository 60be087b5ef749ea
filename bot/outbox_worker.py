"""Acks write the outbox; workers on every replica carry the rows out.

The seam is Bolt's own: a listener's `lazy=[...]` functions are started by the app's
`LazyListenerRunner`. `OutboxLazyRunner` replaces Bolt's thread runner: instead of running
the function on a thread of this process, it writes the request (the Slack payload and the
function's name) to the outbox, before the ack's response leaves. `OutboxWorker` claims rows
and re-dispatches each as a lazy-only request, which makes Bolt run just that function, with
the same middleware, context and `respond`/`client` as before, on whichever replica claimed
it. No listener changes; the shell adapter keeps Bolt's thread runner.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltRequest
from slack_bolt.lazy_listener import LazyListenerRunner

from ganops.bot.outbox import MAX_ATTEMPTS, Outbox, OutboxRow
from ganops.bot.policy import Verdict
from ganops.pipeline.db import database_errors

log = logging.getLogger("ganops.bot")
LAZY_ONLY = "x-slack-bolt-lazy-only"
LAZY_NAME = "x-slack-bolt-lazy-function-name"


def worker_name() -> str:
    """Who holds a claim: host and pid (a pod's name is its hostname)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def outbox_key(kind: str, body: dict[str, Any]) -> str:
    """Slack retries a request with the same body; a new click or command has a new one
    (trigger_id, action_ts), so the key dedups retries only."""
    canonical = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(f"{kind}\n{canonical}".encode()).hexdigest()


class OutboxWorker:
    """Claims outbox rows and runs them on `threads` threads, heartbeating their leases.

    While this replica is acking (an ack in the last `quiet_s`), it starts no more than one
    row at a time: the acks and the work share the process's one interpreter lock, and eight
    rows carried out at once during a burst of fifty acks doubled the acks' p99 on PostgreSQL
    (151 ms against 62, bench/bot_ack.py). Threads stay for rows that wait (a rollout, a slow
    API); the burst's rows start as soon as it is over.
    """

    def __init__(
        self,
        outbox: Outbox,
        run: Callable[[OutboxRow], None],
        *,
        threads: int = 8,
        lease_s: float = 30.0,
        poll_s: float = 0.5,
        quiet_s: float = 0.05,
        name: str | None = None,
    ) -> None:
        self.outbox = outbox
        self.quiet_s = quiet_s
        self._last_ack = -math.inf
        self.run = run
        self.threads = threads
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.name = name or worker_name()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ganops-outbox")
        self._inflight: set[int] = set()
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def wake(self) -> None:
        """A row was just written here by an ack: claim soon rather than at the next poll."""
        self._last_ack = time.monotonic()
        self._wake.set()

    def _acking(self) -> bool:
        """An ack in the last `quiet_s`: rows start one at a time."""
        return time.monotonic() - self._last_ack < self.quiet_s

    def start(self) -> OutboxWorker:
        for target, label in ((self._claim_loop, "claim"), (self._heartbeat, "heartbeat")):
            t = threading.Thread(target=target, name=f"ganops-outbox-{label}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Claim nothing more; wait up to `timeout` for rows in flight (the rest are released
        by their lease running out)."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def busy(self) -> int:
        with self._guard:
            return len(self._inflight)

    def _claim_loop(self) -> None:
        while not self._stop.is_set():
            claimed = False
            acking = self._acking()
            free = (1 if acking else self.threads) - self.busy()
            if free > 0:
                try:
                    claimed = self._claim(free)
                except database_errors() as exc:  # the database is away: try again later
                    log.warning("outbox: cannot claim: %s", exc)
            if not claimed:
                # Held back by acks: look again once they may be over, not at the next poll.
                self._wake.wait(self.quiet_s if acking else self.poll_s)
                self._wake.clear()

    def _claim(self, free: int) -> bool:
        rows = self.outbox.claim_many(self.name, self.lease_s, free)
        for row in rows:
            if row.attempts > MAX_ATTEMPTS:
                log.error(
                    "outbox: giving up row %d (%s) after %d claims", row.id, row.kind, MAX_ATTEMPTS
                )
                self.outbox.finish(row.id, self.name, error="gave up")
                continue
            with self._guard:
                self._inflight.add(row.id)
            self._pool.submit(self._carry_out, row)
        return bool(rows)

    def _carry_out(self, row: OutboxRow) -> None:
        error: str | None = None
        try:
            self.run(row)
        except Exception as exc:  # the listeners report their own; this is a bug: say so
            log.exception("outbox: row %d (%s) failed", row.id, row.kind)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._guard:
                self._inflight.discard(row.id)
        try:
            if not self.outbox.finish(row.id, self.name, error):
                log.warning("outbox: row %d was taken over before it finished here", row.id)
        except database_errors() as exc:  # the lease runs out; another replica reruns it
            log.warning("outbox: cannot mark row %d done: %s", row.id, exc)
        self._wake.set()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            with self._guard:
                ids = sorted(self._inflight)
            if not ids:
                continue
            try:
                self.outbox.extend(ids, self.name, self.lease_s)
            except database_errors() as exc:
                log.warning("outbox: cannot extend leases: %s", exc)


class OutboxLazyRunner(LazyListenerRunner):
    """Bolt's lazy runner, made durable: `start` writes the outbox (inside the ack's
    request, before its response) and wakes this replica's worker."""

    def __init__(self, outbox: Outbox, worker: OutboxWorker) -> None:
        self.logger = log
        self.outbox = outbox
        self.worker = worker

    def start(self, function: Callable[..., None], request: BoltRequest) -> None:
        if any(isinstance(v, Verdict) and v.refused for v in request.context.values()):
            return  # the ack refused it (told and audited there): nothing to carry out
        kind = request.lazy_function_name or function.__name__
        self.outbox.enqueue(kind, outbox_key(kind, request.body), request.body)
        self.worker.wake()


Handler = Callable[[dict[str, Any]], None]


def dispatcher(app: App, handlers: dict[str, Handler] | None = None) -> Callable[[OutboxRow], None]:
    """Run one outbox row: a job's hand-off (`handlers`, kinds `job:…`, e.g. the run
    watcher's auto deploy), else the stored Slack payload as a lazy-only request for its
    listener function."""

    def run(row: OutboxRow) -> None:
        handler = (handlers or {}).get(row.kind)
        if handler is not None:
            handler(row.payload)
            return
        request = BoltRequest(
            body=row.payload,
            mode="socket_mode",  # already verified at the ack; nothing to sign again
            headers={LAZY_ONLY: "1", LAZY_NAME: row.kind},
        )
        app.dispatch(request)

    return run


def install_outbox(
    app: App,
    outbox: Outbox,
    *,
    handlers: dict[str, Handler] | None = None,
    threads: int = 8,
    lease_s: float = 30.0,
    poll_s: float = 0.5,
) -> OutboxWorker:
    """Route `app`'s lazy listeners (and the jobs' hand-offs in `handlers`) through
    `outbox`; returns the started worker."""
    run = dispatcher(app, handlers)
    worker = OutboxWorker(outbox, run, threads=threads, lease_s=lease_s, poll_s=poll_s)
    # The same swap Bolt's AWS Lambda adapter makes for its own lazy runner.
    runner = app.listener_runner
    runner.lazy_listener_runner = OutboxLazyRunner(outbox, worker)
    # Bolt deep-copies the whole request (its context too) for a lazy function that would
    # run on another thread; the outbox only reads the body, the name and the ack's verdict,
    # and the row is re-dispatched from JSON anyway. The copy was a third of an ack's CPU.
    runner._build_lazy_request = _lazy_request  # type: ignore[method-assign]
    return worker.start()


def _lazy_request(request: BoltRequest, lazy_func_name: str) -> BoltRequest:
    """What `OutboxLazyRunner.start` reads of a lazy request, without Bolt's deep copy."""
    lazy = BoltRequest(body=request.body, context=dict(request.context), mode="socket_mode")
    lazy.lazy_only = True
    lazy.lazy_function_name = lazy_func_name
    return lazy
