"""*Promote now* and *Roll back* in a canary's thread. Approvers only: the gate
(`bot.listeners.gated`) refuses anyone else before these run, tells the clicker alone,
audits it and changes nothing. Each button carries only the canary id; the step, the version
and what to do are read from the canaries table under the model's rollout lock."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from ganops.bot.errors import guarded
from ganops.bot.listeners.context import services_of, settings_of
from ganops.bot.listeners.gated import gated


def register(app: App) -> None:
    gated(app, "button:canary_promote")(ack=_ack, lazy=[promote_clicked])
    gated(app, "button:canary_rollback")(ack=_ack, lazy=[rollback_clicked])


def _ack(ack: Ack) -> None:
    ack()


@guarded
def promote_clicked(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    _carry_out(body, client, context, promote=True)


@guarded
def rollback_clicked(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    _carry_out(body, client, context, promote=False)


def _carry_out(
    body: dict[str, Any], client: WebClient, context: BoltContext, *, promote: bool
) -> None:
    user = str(body["user"]["id"])
    canary_id = str(body["actions"][0].get("value") or "")
    channel = (body.get("channel") or {}).get("id") or settings_of(context).channel
    canaries = services_of(context).canaries
    if canaries is None:
        client.chat_postEphemeral(channel=channel, user=user, text="Canaries are not set up here.")
        return
    said = canaries.promote_now(canary_id, user) if promote else canaries.roll_back(canary_id, user)
    client.chat_postEphemeral(channel=channel, user=user, text=said)
