"""`/retrain` with no arguments: a modal with the fields and their ranges.

The command is acked empty at once and the modal opened in a lazy listener (`views.open`
with the command's trigger id, valid for 3 s: Bolt's lazy-modal pattern). On submission the
ack validates with the text form's own parser: a bad value goes back as
`response_action: errors` on its field and nothing starts; a good one closes the modal, and a
lazy listener starts the run through `start_run`, as `/retrain k=v` does, posting the run
message in the channel the command came from.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from ganops.bot.blocks.modal import RETRAIN_MODAL, ModalOrigin, retrain_modal, submitted_fields
from ganops.bot.blocks.ops import concurrent_text, upstream_text
from ganops.bot.errors import ConcurrentRunError, InvalidParamsError, UpstreamError, guarded
from ganops.bot.listeners.context import services_of
from ganops.bot.parsing import parse_retrain_fields, request_id_for, retrain_text
from ganops.bot.runs.start import start_run

SOURCE = "modal"  # how the run message and the audit log name this path


def register(app: App) -> None:
    # Registered before `bot.listeners.retrain`: Bolt runs the first listener that matches,
    # so `/retrain` with text never gets here and keeps its own path unchanged.
    app.command("/retrain", matchers=[_no_text])(ack=_ack, lazy=[open_modal])
    app.view_submission(RETRAIN_MODAL)(ack=ack_submission, lazy=[start_from_modal])


def _no_text(body: dict[str, Any]) -> bool:
    return not (body.get("text") or "").strip()


def _ack(ack: Ack) -> None:
    ack()


@guarded
def open_modal(body: dict[str, Any], client: WebClient) -> None:
    origin = ModalOrigin(
        channel=body["channel_id"], trigger_id=body["trigger_id"], team=body.get("team_id") or ""
    )
    client.views_open(trigger_id=body["trigger_id"], view=retrain_modal(origin))


def _fields(body: dict[str, Any]) -> dict[str, str]:
    return submitted_fields(body["view"]["state"]["values"])


def ack_submission(ack: Ack, body: dict[str, Any]) -> None:
    try:
        parse_retrain_fields(_fields(body))
    except InvalidParamsError as exc:
        # A problem without a field (none today) shows on the first one, never silently.
        ack(response_action="errors", errors={exc.key or "model": str(exc)})
        return
    ack()


@guarded
def start_from_modal(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    fields = _fields(body)
    try:
        params = parse_retrain_fields(fields)
    except InvalidParamsError:
        return  # the ack already showed the problem on its field
    origin = ModalOrigin.loads(body["view"].get("private_metadata") or "")
    user = body["user"]["id"]
    # The text form's scheme: the command's trigger id, and the text these fields stand for.
    request_id = request_id_for(
        origin.team, origin.channel, user, retrain_text(fields), origin.trigger_id
    )
    try:
        start_run(
            services_of(context),
            params,
            request_id,
            requested_by=user,
            channel=origin.channel,
            source=SOURCE,
        )
    except ConcurrentRunError as exc:
        client.chat_postEphemeral(
            channel=origin.channel, user=user, text=concurrent_text(exc.model, exc.run_id)
        )
    except UpstreamError as exc:
        client.chat_postMessage(
            channel=origin.channel, text=upstream_text("start the run", str(exc))
        )
