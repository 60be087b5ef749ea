"""The drift alarm's buttons: Retrain now, the Snooze menu (1 h, 4 h, 1 d; the old fixed
"Snooze 1h" button of cards already posted still works), Ignore. All are for approvers:
the gate (`bot.listeners.gated`) refuses anyone else before these listeners run, tells the
clicker alone, audits it, and changes nothing.

Each button carries only the episode id. Retrain goes through `start_run`, the same path as
`/retrain`, with the episode id as the request id: clicks, double clicks and Slack retries
start one run, threaded under the alarm, and the one-run-per-model rule still holds.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from ganops.bot.blocks.alarms import (
    SNOOZE_CHOICES,
    alarm_thread_note,
    parse_snooze_option,
    retrain_data_text,
)
from ganops.bot.blocks.ops import concurrent_text, upstream_text, usage_text
from ganops.bot.drift.retrain import plan_retrain
from ganops.bot.drift.watch import AlarmBook, render_card
from ganops.bot.errors import ConcurrentRunError, InvalidParamsError, UpstreamError, guarded
from ganops.bot.listeners.context import services_of, settings_of
from ganops.bot.listeners.gated import gated
from ganops.bot.runs.start import start_run

log = logging.getLogger("ganops.bot")

SNOOZE_S = 3600.0  # the old fixed button's length
NOT_ON_OFFER = "That snooze length is not one I offer; pick 1 hour, 4 hours or 1 day from the menu."


def register(app: App) -> None:
    gated(app, "button:alarm_retrain")(ack=_ack, lazy=[retrain_now])
    gated(app, "button:alarm_snooze")(ack=_ack, lazy=[snooze])
    gated(app, "menu:alarm_snooze_for")(ack=_ack, lazy=[snooze_for])
    gated(app, "button:alarm_ignore")(ack=_ack, lazy=[ignore])


def _ack(ack: Ack) -> None:
    ack()


def _click(body: dict[str, Any]) -> tuple[str, str, str]:
    """(episode id, user id, channel id) of a block_actions payload: a button's value, or
    the episode part of the snooze menu's chosen option."""
    action = body["actions"][0]
    channel = (body.get("channel") or {}).get("id") or ""
    value = action.get("value")
    if value is None:
        value = str((action.get("selected_option") or {}).get("value") or "")
        value = value.partition(":")[2] or value
    return str(value), str(body["user"]["id"]), channel


def _ephemeral(client: WebClient, channel: str, user: str, text: str) -> None:
    if channel:
        client.chat_postEphemeral(channel=channel, user=user, text=text)


@guarded
def retrain_now(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    episode_id, user, channel = _click(body)
    services = services_of(context)
    book = AlarmBook(services.store)
    view = book.get(episode_id)
    if view is None:
        _ephemeral(client, channel, user, "That alarm is no longer known to me.")
        return
    alarm_channel, alarm_ts, _ = book.row_meta(episode_id)
    plan = plan_retrain(services, settings_of(context), view, now=time.time())
    if plan.params is None:
        # Too few inputs of the new kind: a retrain on the old data cannot learn them.
        text = retrain_data_text(plan.captured, plan.needed, plan.held_out, plan.capture_on)
        _ephemeral(client, channel, user, text)
        if alarm_channel and alarm_ts:
            client.chat_postMessage(channel=alarm_channel, thread_ts=alarm_ts, text=text)
        return
    try:
        # A retry after a turned-down retrain is a new request; clicks on one attempt are not.
        request_id = episode_id if not view.attempts else f"{episode_id}-retry{view.attempts}"
        outcome = start_run(
            services,
            plan.params,
            request_id,
            requested_by=user,
            channel=alarm_channel or channel,
            thread_ts=alarm_ts,
            source="drift-alarm",
        )
    except ConcurrentRunError as exc:
        _ephemeral(client, channel, user, concurrent_text(exc.model, exc.run_id))
        return
    except UpstreamError as exc:
        _ephemeral(client, channel, user, upstream_text("start the retrain", str(exc)))
        return
    except InvalidParamsError as exc:  # the champion's recipe this launcher cannot run
        _ephemeral(client, channel, user, usage_text(str(exc)))
        return
    # Also when the run already existed: a bot that died between starting the run and
    # recording it on the alarm catches up on the next click.
    if book.set_retrain(episode_id, user, outcome.run_id):
        if plan.capture_on:
            book.set_captured(episode_id, plan.captured - plan.held_out)
        render_card(book, client, episode_id, settings_of(context).channel)
        if alarm_channel and alarm_ts:
            text = retrain_data_text(plan.captured, plan.needed, plan.held_out, plan.capture_on)
            client.chat_postMessage(channel=alarm_channel, thread_ts=alarm_ts, text=text)
    if not outcome.created:
        _ephemeral(
            client,
            channel,
            user,
            f"A retrain for this alarm is already running: `{outcome.run_id}`.",
        )


@guarded
def snooze(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    _act(body, client, context, "snooze")


@guarded
def snooze_for(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """The snooze menu: the length comes from the chosen option, and only a length the card
    offers is taken (a forged payload is refused, audited, and changes nothing)."""
    value = str((body["actions"][0].get("selected_option") or {}).get("value") or "")
    parsed = parse_snooze_option(value)
    if parsed is None:
        episode_id, user, channel = _click(body)
        detail = {"reason": "snooze length not on offer", "option": value[:100]}
        services_of(context).store.audit(
            user, "snooze", episode_id, "refused", detail, path="button"
        )
        _ephemeral(client, channel, user, NOT_ON_OFFER)
        return
    _act(body, client, context, "snooze", SNOOZE_CHOICES[parsed[0]][1])


@guarded
def ignore(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    _act(body, client, context, "ignore")


def _act(
    body: dict[str, Any],
    client: WebClient,
    context: BoltContext,
    kind: Literal["snooze", "ignore"],
    snooze_s: float = SNOOZE_S,
) -> None:
    episode_id, user, channel = _click(body)
    book = AlarmBook(services_of(context).store)
    done = (
        book.snooze(episode_id, user, snooze_s)
        if kind == "snooze"
        else book.ignore(episode_id, user)
    )
    if not done:
        _ephemeral(client, channel, user, "That alarm has already ended or been handled.")
        return
    render_card(book, client, episode_id, settings_of(context).channel)
    alarm_channel, alarm_ts, _ = book.row_meta(episode_id)
    if alarm_channel and alarm_ts:
        client.chat_postMessage(
            channel=alarm_channel,
            thread_ts=alarm_ts,
            text=alarm_thread_note(kind, user, snooze_s=snooze_s),
        )
