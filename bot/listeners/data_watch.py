"""The new-data card's buttons: Retrain / Not now. Approvers only: the gate refuses anyone
else before these listeners run (audited with path `button`).

Retrain goes through `start_run` with the offer id as the request id, so clicks, double
clicks and Slack retries start one run, threaded under the card.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from ganops.bot.blocks.data_watch import DATA_DISMISS, DATA_RETRAIN, offer_card, offer_text
from ganops.bot.blocks.ops import concurrent_text, upstream_text, usage_text
from ganops.bot.drift.retrain import retrain_params
from ganops.bot.errors import ConcurrentRunError, InvalidParamsError, UpstreamError, guarded
from ganops.bot.listeners.context import services_of, settings_of
from ganops.bot.listeners.gated import gated
from ganops.bot.runs.data_watch import DataOffers
from ganops.bot.runs.start import start_run


def register(app: App) -> None:
    gated(app, f"button:{DATA_RETRAIN}")(ack=_ack, lazy=[retrain])
    gated(app, f"button:{DATA_DISMISS}")(ack=_ack, lazy=[dismiss])


def _ack(ack: Ack) -> None:
    ack()


def _click(body: dict[str, Any]) -> tuple[str, str]:
    """(offer id, user) of a click the gate let through (an approver's)."""
    return str(body["actions"][0]["value"]), str(body["user"]["id"])


@guarded
def retrain(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    services = services_of(context)
    offer_id, user = _click(body)
    offers = DataOffers(services.store)
    offer = offers.get(offer_id)
    if offer is None or offer.state != "offered":
        return
    channel, ts = offers.message(offer_id)
    channel = channel or settings_of(context).channel
    # The champion's recipe on the watched source: same sizes and length, the new data.
    base = retrain_params(services, offer.model, offer.champion_version)
    params = dataclasses.replace(base, data=offer.source, captured="", synthetic_n=None)
    try:
        outcome = start_run(
            services, params, offer_id, requested_by=user, channel=channel, thread_ts=ts,
            source="data-watch", path="button",
        )  # fmt: skip
    except (ConcurrentRunError, UpstreamError, InvalidParamsError) as exc:
        if isinstance(exc, ConcurrentRunError):
            text = concurrent_text(exc.model, exc.run_id)
        elif isinstance(exc, InvalidParamsError):  # the recipe this launcher cannot run
            text = usage_text(str(exc))
        else:
            text = upstream_text("start the retrain", str(exc))
        client.chat_postEphemeral(channel=channel, user=user, text=text)
        return
    if offers.act(offer_id, user, "retraining", outcome.run_id):
        _render(client, offers, offer_id)


@guarded
def dismiss(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    services = services_of(context)
    offer_id, user = _click(body)
    offers = DataOffers(services.store)
    if offers.act(offer_id, user, "dismissed"):
        _render(client, offers, offer_id)


def _render(client: WebClient, offers: DataOffers, offer_id: str) -> None:
    view = offers.get(offer_id)
    channel, ts = offers.message(offer_id)
    if view is not None and channel and ts:
        client.chat_update(channel=channel, ts=ts, text=offer_text(view), blocks=offer_card(view))
