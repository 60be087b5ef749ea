"""`/retrain` with no arguments, and the App Home's *Start a retrain*: a modal with the fields
and their ranges.

The command (or the click) is acked empty at once and the modal opened in a lazy listener
(`views.open` with the trigger id, valid for 3 s: Bolt's lazy-modal pattern). On submission
the ack validates with the text form's own parser and asks the gate: a bad value, or a value
past a bound that only an approver may ask for, goes back as `response_action: errors` on its
field (naming the bound; the refusal is audited with path `modal`) and nothing starts. A good
one closes the modal, and a lazy listener asks the gate again and starts the run through
`start_run`, as `/retrain k=v` does, posting the run message in the channel the command came
from (the Home tab's: the configured channel).
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from ganops.bot.blocks.modal import ModalOrigin, retrain_modal, submitted_fields
from ganops.bot.blocks.ops import concurrent_text, refusal_text, upstream_text, usage_text
from ganops.bot.errors import ConcurrentRunError, InvalidParamsError, UpstreamError, guarded
from ganops.bot.listeners.context import gate_of, services_of, settings_of
from ganops.bot.listeners.gated import gated
from ganops.bot.parsing import parse_retrain_fields, request_id_for, retrain_text
from ganops.bot.policy import Bounds, Verdict
from ganops.bot.runs.start import start_run

SOURCE = "modal"  # how the run message and the audit log name this path
VERDICT_KEY = "ganops_modal_verdict"


def register(app: App) -> None:
    # Registered before `bot.listeners.retrain`: Bolt runs the first listener that matches,
    # so `/retrain` with text never gets here and keeps its own path unchanged.
    gated(app, "slash:/retrain form", matchers=[_no_text])(ack=_ack, lazy=[open_modal])
    gated(app, "home:home_retrain")(ack=_ack, lazy=[open_from_home])
    gated(app, "modal:retrain")(ack=ack_submission, lazy=[start_from_modal])


def _no_text(body: dict[str, Any]) -> bool:
    return not (body.get("text") or "").strip()


def _ack(ack: Ack) -> None:
    ack()


def _open(client: WebClient, context: BoltContext, origin: ModalOrigin, user: str) -> None:
    gate = gate_of(context)
    approver = gate.check(actor=user, action="auto_deploy").allowed  # draws auto_deploy
    view = retrain_modal(origin, Bounds.of(settings_of(context)), approver=approver)
    client.views_open(trigger_id=origin.trigger_id, view=view)


@guarded
def open_modal(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    origin = ModalOrigin(
        channel=body["channel_id"], trigger_id=body["trigger_id"], team=body.get("team_id") or ""
    )
    _open(client, context, origin, str(body["user_id"]))


@guarded
def open_from_home(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    # The Home tab has no channel: the run message goes where the bot posts on its own.
    origin = ModalOrigin(
        channel=settings_of(context).channel,
        trigger_id=body["trigger_id"],
        team=(body.get("team") or {}).get("id") or "",
    )
    _open(client, context, origin, str(body["user"]["id"]))


def _fields(body: dict[str, Any]) -> dict[str, str]:
    return submitted_fields(body["view"]["state"]["values"])


def ack_submission(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    fields = _fields(body)
    try:
        params = parse_retrain_fields(fields)
    except InvalidParamsError as exc:
        # A problem without a field (none today) shows on the first one, never silently.
        ack(response_action="errors", errors={exc.key or "model": str(exc)})
        return
    user = str(body["user"]["id"])
    verdict = gate_of(context).authorize(
        actor=user, action="retrain", params=params, path="modal", obj=params.model
    )
    context[VERDICT_KEY] = verdict  # the launch follows this verdict, then checks again
    if verdict.refused:
        ack(response_action="errors", errors={_field(verdict, body): verdict.reason})
        return
    ack()


def _field(verdict: Verdict, body: dict[str, Any]) -> str:
    """The form field a refusal shows on: the key that crossed, if the view drew it (a forged
    `auto_deploy` from a non-approver's form shows on the first field)."""
    drawn = {b.get("block_id") for b in body["view"].get("blocks") or []}
    return verdict.key if verdict.key is not None and verdict.key in drawn else "model"


@guarded
def start_from_modal(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    verdict = context.get(VERDICT_KEY)
    if verdict is not None and verdict.refused:
        return  # the ack showed the problem on its field (and audited a refusal)
    # None: carried out from the outbox (a refused ack enqueues nothing); checked again below.
    fields = _fields(body)
    params = parse_retrain_fields(fields)  # the ack parsed the same fields
    origin = ModalOrigin.loads(body["view"].get("private_metadata") or "")
    user = str(body["user"]["id"])
    # Again at launch: an approver who left the group since the ack launches nothing.
    again = gate_of(context).authorize(
        actor=user, action="retrain", params=params, path="modal", obj=params.model
    )
    if again.refused:
        client.chat_postEphemeral(
            channel=origin.channel, user=user, text=refusal_text(again.reason)
        )
        return
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
            path="modal",
        )
    except ConcurrentRunError as exc:
        text = concurrent_text(exc.model, exc.run_id)
        client.chat_postEphemeral(channel=origin.channel, user=user, text=text)
    except InvalidParamsError as exc:  # what this launcher cannot run (nodes > 1 locally…)
        client.chat_postEphemeral(channel=origin.channel, user=user, text=usage_text(str(exc)))
    except UpstreamError as exc:
        client.chat_postMessage(
            channel=origin.channel, text=upstream_text("start the run", str(exc))
        )
