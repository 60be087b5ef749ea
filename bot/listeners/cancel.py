"""The Cancel button on a run's progress message: ack at once, cancel in a lazy listener.

The button carries only the run id; who may cancel is decided on the server side by
`bot.runs.cancel.cancel_run`, the same function as `/ganops cancel`.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from ganops.bot.blocks.ops import upstream_text
from ganops.bot.blocks.runs import CANCEL_ACTION
from ganops.bot.errors import UpstreamError, guarded
from ganops.bot.listeners.context import gate_of, services_of
from ganops.bot.listeners.gated import gated
from ganops.bot.runs.cancel import cancel_run


def register(app: App) -> None:
    gated(app, f"button:{CANCEL_ACTION}")(ack=_ack, lazy=[cancel_clicked])


def _ack(ack: Ack) -> None:
    ack()


@guarded
def cancel_clicked(
    body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    user = str(body["user"]["id"])
    channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
    run_id = str(action.get("value") or "")
    try:
        text = cancel_run(
            services_of(context), gate_of(context), run_id=run_id, user=user, path="button"
        )
    except UpstreamError as exc:
        text = upstream_text("cancel the run", str(exc))
    client.chat_postEphemeral(channel=channel, user=user, text=text)
