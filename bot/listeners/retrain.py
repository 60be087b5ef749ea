"""`/retrain key=value ...`: ack at once, launch in a lazy listener.

The ack parses the text (pure and fast) and asks the policy: bad input, and a request only
an approver may make (`auto_deploy=true`, past a bound), are answered in the ack itself, as
an ephemeral message (a refusal is audited), and nothing is launched. A good request acks
empty; the lazy listener checks again and starts the run, whose one channel message says who
asked and with what. Where the bot cannot post (archived, not a member), the answer goes
through `response_url` and nothing is launched.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from ganops.bot.blocks.ops import (
    channel_unusable_text,
    concurrent_text,
    refusal_text,
    upstream_text,
    usage_blocks,
    usage_text,
)
from ganops.bot.errors import (
    ConcurrentRunError,
    InvalidParamsError,
    UpstreamError,
    UsageError,
    guarded,
)
from ganops.bot.listeners.context import gate_of, services_of
from ganops.bot.listeners.gated import gated
from ganops.bot.parsing import parse_retrain, request_id_for
from ganops.bot.runs.delivery import ChannelUnusableError
from ganops.bot.runs.start import start_run

VERDICT_KEY = "ganops_retrain_verdict"


def register(app: App) -> None:
    gated(app, "slash:/retrain")(ack=ack_retrain, lazy=[launch_retrain])


def ack_retrain(ack: Ack, command: dict[str, Any], context: BoltContext) -> None:
    try:
        params = parse_retrain(command.get("text") or "")
    except UsageError as exc:
        ack(
            response_type="ephemeral",
            text=usage_text(exc.problem),
            blocks=usage_blocks(exc.problem, exc.usage),
        )
        return
    user = str(command.get("user_id") or "")
    verdict = gate_of(context).authorize(
        actor=user, action="retrain", params=params, path="slash", obj=params.model
    )
    # The lazy listener gets a copy of this context: it follows this one verdict, so an
    # approver-group lookup that flaps between the two can never launch what was refused.
    context[VERDICT_KEY] = verdict
    if verdict.refused:
        ack(response_type="ephemeral", text=refusal_text(verdict.reason))
        return
    ack()


@guarded
def launch_retrain(
    body: dict[str, Any], client: WebClient, context: BoltContext, respond: Respond
) -> None:
    text = body.get("text") or ""
    try:
        params = parse_retrain(text)
    except UsageError:
        return  # the ack already told the user
    channel, user = body["channel_id"], body["user_id"]
    verdict = context.get(VERDICT_KEY)
    if verdict is None:
        # Carried out from the outbox, maybe by another replica: the ack allowed it (a refused
        # ack enqueues nothing), and the gate is asked again here before anything starts.
        verdict = gate_of(context).authorize(
            actor=user, action="retrain", params=params, path="slash", obj=params.model
        )
        if verdict.refused:
            client.chat_postEphemeral(channel=channel, user=user, text=refusal_text(verdict.reason))
            return
    if verdict.refused:
        return  # the ack refused it, and audited the refusal
    request_id = request_id_for(
        body.get("team_id") or "", channel, user, text, body.get("trigger_id") or ""
    )
    services = services_of(context)
    try:
        start_run(services, params, request_id, requested_by=user, channel=channel, path="slash")
    except ChannelUnusableError as exc:
        # Posting here fails, so the answer goes back the way the command came.
        respond(response_type="ephemeral", text=channel_unusable_text(exc.reason))
    except ConcurrentRunError as exc:
        client.chat_postEphemeral(
            channel=channel, user=user, text=concurrent_text(exc.model, exc.run_id)
        )
    except InvalidParamsError as exc:  # what this launcher cannot run (nodes > 1 locally…)
        client.chat_postEphemeral(channel=channel, user=user, text=usage_text(str(exc)))
    except UpstreamError as exc:
        client.chat_postMessage(channel=channel, text=upstream_text("start the run", str(exc)))
