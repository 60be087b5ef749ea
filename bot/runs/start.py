"""Starting a run and posting about it: shared by `/retrain`, the drift alarm's Retrain button
and the run watcher.

`start_run` is the one way the bot starts a pipeline run: the launcher is idempotent on the
request id, the `runs` row is unique on it, and only the caller that inserted the row posts
the run message. So Slack's retries, double clicks and a crash between any two steps give
one run and one message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block

from ganops.bot.blocks import blocks_to_dicts
from ganops.bot.blocks.runs import RunView, run_blocks, run_text
from ganops.bot.policy import AuditPath
from ganops.bot.ports import RunParams, RunStatus
from ganops.bot.runs.delivery import check_channel, is_permanent, slack_error
from ganops.bot.runs.record import RunBook, RunRow
from ganops.bot.services import Services

log = logging.getLogger("ganops.bot")

# Slack message metadata type that marks the bot's own posts (see `find_post`).
POST_EVENT = "ganops_post"


@dataclass(frozen=True)
class StartOutcome:
    run_id: str
    created: bool  # False: this request id started a run before; nothing new was posted
    url: str | None
    message_ts: str | None


def start_run(
    services: Services,
    params: RunParams,
    request_id: str,
    *,
    requested_by: str,
    channel: str,
    thread_ts: str | None = None,
    source: str = "/retrain",
    path: AuditPath | None = None,
) -> StartOutcome:
    """Launch (or find) the run for `request_id`, record it, and post its message once.
    `path` is the audit path of the entry point that asked (default: from `source`).

    Raises:
        ChannelUnusableError: the bot cannot post in `channel`; nothing was launched.
        ConcurrentRunError: another run for the model is going.
        UpstreamError: the launcher's backend is unreachable.
    """
    known = services.runbook.by_request(request_id)
    if known is not None:
        return StartOutcome(known.run_id, False, known.url, known.message_ts)
    check_channel(services.slack, channel)  # nothing starts where nobody would hear of it
    params = with_data_scope(services, params, requested_by)
    launched = services.launcher.launch(params, request_id)
    row = RunRow(
        run_id=launched.run_id,
        request_id=request_id,
        model=params.model,
        requested_by=requested_by,
        channel=channel,
        params=params.as_dict(),
        thread_ts=thread_ts,
        url=launched.url,
        source=source,
        created_at=time.time(),
    )
    if not services.runbook.add(row):  # a concurrent retry of the same request got here first
        known = services.runbook.by_request(request_id)
        ts = known.message_ts if known else None
        return StartOutcome(launched.run_id, False, launched.url, ts)
    if path is None:  # callers that predate `path`: /retrain, else an alarm's Retrain now
        path = "slash" if source == "/retrain" else "button"
    services.store.audit(
        requested_by, "retrain", launched.run_id, "started", {"source": source}, path=path
    )
    try:
        ts = post_run_message(services.slack, services.runbook, row, view_of(row, None))
    except SlackApiError as exc:
        if not is_permanent(exc):
            raise
        # The run is going: the watcher settles it and takes its outcome elsewhere.
        log.warning("run %s: cannot post its message: %s", launched.run_id, slack_error(exc))
        return StartOutcome(launched.run_id, True, launched.url, None)
    return StartOutcome(launched.run_id, True, launched.url, ts)


def with_data_scope(services: Services, params: RunParams, requested_by: str) -> RunParams:
    """`params` with `data_anywhere` set from who asks, here where every path starts its run:
    only an approver's run may fetch data outside GANOPS_DATA_ALLOW, whichever listener let
    the request through. A failing approver lookup counts as no."""
    book = services.approvals
    try:
        approver = book is not None and book.is_approver(requested_by)
    except Exception as exc:  # e.g. Slack's user-group lookup: never widen on an error
        log.warning("approver lookup for %s failed: %s", requested_by, exc)
        approver = False
    return dataclasses.replace(params, data_anywhere=approver)


def view_of(row: RunRow, status: RunStatus | None, now: float | None = None) -> RunView:
    """The run message's content: the row, plus the launcher's status when there is one."""
    now = time.time() if now is None else now
    if status is None:
        return RunView(
            run_id=row.run_id,
            model=row.model,
            requested_by=row.requested_by,
            params=row.params,
            state=row.state,
            url=row.url,
            elapsed_s=now - row.created_at,
            source=row.source,
        )
    started = status.created_at or row.created_at
    result = status.result
    return RunView(
        run_id=row.run_id,
        model=row.model,
        requested_by=row.requested_by,
        params=status.params or row.params,
        state=status.state,
        url=status.url or row.url,
        current_step=status.current_step,
        steps_done=status.steps_done,
        steps_total=status.steps_total,
        train_step=status.train_step,
        train_total=status.train_total,
        train_rate=status.train_rate,
        losses=status.losses,
        elapsed_s=(status.finished_at or now) - started,
        failed_step=status.failed_step,
        error=status.error,
        gate_reason=result.gate_reason if result else None,
        version=result.version if result else None,
        source=row.source,
    )


def rendered(text: str, blocks: Sequence[Block]) -> str:
    """A stable fingerprint of a message, to skip `chat.update` when nothing changed."""
    return json.dumps({"text": text, "blocks": blocks_to_dicts(list(blocks))}, sort_keys=True)


def post_run_message(client: WebClient, runbook: RunBook, row: RunRow, view: RunView) -> str:
    text, blocks = run_text(view), run_blocks(view)
    ts = post_keyed(
        client, runbook, f"{row.run_id}:message", row.channel, row.thread_ts, text, blocks
    )
    runbook.update(row.run_id, message_ts=ts, last_rendered=rendered(text, blocks))
    return ts


def post_keyed(
    client: WebClient,
    runbook: RunBook,
    key: str,
    channel: str,
    thread_ts: str | None,
    text: str,
    blocks: Sequence[Block] = (),
) -> str:
    """Post a message at most once per `key` (see `RunBook.post_once`); return its ts."""

    def post() -> str:
        resp = client.chat_postMessage(
            channel=channel,
            thread_ts=thread_ts,
            text=text,
            blocks=list(blocks) or None,
            metadata={"event_type": POST_EVENT, "event_payload": {"key": key}},
        )
        return str(resp["ts"])

    def find(since: float) -> str | None:
        return find_post(client, channel, thread_ts, key, since)

    return runbook.post_once(key, channel, thread_ts, post, find)


def find_post(
    client: WebClient, channel: str, thread_ts: str | None, key: str, since: float
) -> str | None:
    """The ts of an earlier post of `key` since `since`, found by its metadata, or None."""
    try:
        if thread_ts:
            resp = client.conversations_replies(
                channel=channel, ts=thread_ts, oldest=f"{since:.6f}", include_all_metadata=True
            )
        else:
            resp = client.conversations_history(
                channel=channel, oldest=f"{since:.6f}", include_all_metadata=True, limit=200
            )
    except SlackApiError as exc:  # no history scope: post again rather than never
        log.warning("cannot look for an earlier post of %s: %s", key, exc)
        return None
    messages: list[dict[str, Any]] = resp.get("messages") or []
    for message in messages:
        meta = message.get("metadata") or {}
        if meta.get("event_type") == POST_EVENT and meta.get("event_payload", {}).get("key") == key:
            return str(message["ts"])
    return None
