"""`/ganops status | runs | models | rollback | cancel | approvers | audit | approve | reject |
help`.

Answers that need no I/O (help, approvers, usage errors) go in the ack; the others are
looked up in a lazy listener and answered with an ephemeral message, except a rollback
request, whose approval card is posted in the channel for everyone to see.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.models.blocks import Block

from ganops.bot.approvals.jobs import show_decision
from ganops.bot.approvals.rollback import request_rollback
from ganops.bot.blocks.ops import (
    CanaryLine,
    ModelStatus,
    RunLine,
    approvers_blocks,
    audit_blocks,
    help_blocks,
    models_blocks,
    refusal_text,
    runs_blocks,
    status_blocks,
    text_blocks,
    upstream_text,
    usage_blocks,
    usage_text,
)
from ganops.bot.errors import UpstreamError, UsageError, guarded
from ganops.bot.gate import Gate
from ganops.bot.listeners.context import gate_of, services_of, settings_of
from ganops.bot.listeners.gated import gated
from ganops.bot.parsing import GANOPS_USAGE, GanopsCommand, parse_count, parse_ganops
from ganops.bot.policy import Policy, audit_refusal
from ganops.bot.runs.cancel import cancel_run
from ganops.bot.services import Services
from ganops.bot.settings import Settings
from ganops.model.registry import CHALLENGER, CHAMPION
from ganops.pipeline.params import MODELS
from ganops.pipeline.ports import FINAL_STATES

# Subcommands answered in the ack: no I/O, so well within Slack's 3 seconds.
_IN_ACK = {"help", "approvers"}


def register(app: App) -> None:
    # Each sub-command's action: bot.gate.GANOPS_ACTIONS (rollback is refused by the gate).
    gated(app, "slash:/ganops")(ack=ack_ganops, lazy=[answer_ganops])


def ack_ganops(ack: Ack, command: dict[str, Any], context: BoltContext) -> None:
    cmd = parse_ganops(command.get("text") or "")
    if cmd.name == "help":
        ack(response_type="ephemeral", text="ganops help", blocks=help_blocks(_unknown(cmd)))
    elif cmd.name == "approvers":
        s = settings_of(context)
        blocks = approvers_blocks(
            s.approvers, s.approver_groups, s.allow_self_approval, s.approvals_required
        )
        ack(response_type="ephemeral", text="ganops approvers", blocks=blocks)
    else:
        ack()


def _unknown(cmd: GanopsCommand) -> str | None:
    return cmd.args[0] if cmd.name == "help" and cmd.args and cmd.args[0] != "help" else None


@guarded
def answer_ganops(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    cmd = parse_ganops(body.get("text") or "")
    if cmd.name in _IN_ACK:
        return
    channel, user = body["channel_id"], body["user_id"]
    services, settings = services_of(context), settings_of(context)
    try:
        blocks = _answer(cmd, services, settings, gate_of(context), user, channel, client)
    except UsageError as exc:
        blocks = usage_blocks(exc.problem, exc.usage)
        client.chat_postEphemeral(
            channel=channel, user=user, text=usage_text(exc.problem), blocks=blocks
        )
        return
    except UpstreamError as exc:
        blocks = text_blocks(upstream_text(f"answer /ganops {cmd.name}", str(exc)))
    if blocks:
        client.chat_postEphemeral(
            channel=channel, user=user, text=f"/ganops {cmd.name}", blocks=blocks
        )


def _answer(
    cmd: GanopsCommand,
    services: Services,
    settings: Settings,
    gate: Gate,
    user: str,
    channel: str,
    client: WebClient,
) -> list[Block]:
    if cmd.name == "status":
        return _status(services)
    if cmd.name == "runs":
        limit = parse_count(cmd.args, 10, 50, GANOPS_USAGE)
        return runs_blocks([_line(r) for r in services.runbook.recent(limit)])
    if cmd.name == "models":
        model = _model_arg(cmd.args)
        return models_blocks(model, services.registry.list_versions(model))
    if cmd.name == "audit":
        return audit_blocks(services.store.list_audit(parse_count(cmd.args, 20, 200, GANOPS_USAGE)))
    if cmd.name in ("approve", "reject"):
        return _decide(cmd, services, user, client)
    if cmd.name == "rollback":
        return _rollback(cmd, services, gate.policy, user, channel)
    if cmd.name == "cancel":
        if len(cmd.args) > 1:
            raise UsageError("/ganops cancel takes at most one run id", GANOPS_USAGE)
        run_id = cmd.args[0] if cmd.args else None
        text = cancel_run(services, gate, run_id=run_id, user=user, path="slash")
        return text_blocks(text)
    return help_blocks()


def _rollback(
    cmd: GanopsCommand, services: Services, policy: Policy, user: str, channel: str
) -> list[Block]:
    """Approvers only: a refusal is audited and opens no approval."""
    verdict = policy.may("rollback", user)
    if verdict.refused:
        obj = " ".join(cmd.args) or "cut"
        audit_refusal(
            services.store, user=user, action="rollback", obj=obj, verdict=verdict, path="slash"
        )
        return text_blocks(refusal_text(verdict.reason))
    return request_rollback(services, cmd.args, user, channel)


def _line(row: Any) -> RunLine:
    return RunLine(row.run_id, row.model, row.state, row.requested_by, row.created_at, row.url)


def _model_arg(args: tuple[str, ...]) -> str:
    if not args:
        return "cut"
    if len(args) > 1 or args[0].lower() not in MODELS:
        raise UsageError(
            f"expected one of {', '.join(MODELS)}, got {' '.join(args)!r}", GANOPS_USAGE
        )
    return args[0].lower()


def _status(services: Services) -> list[Block]:
    models = []
    for model in MODELS:
        champion = services.registry.get_alias(model, CHAMPION)
        challenger = services.registry.get_alias(model, CHALLENGER)
        if champion is None and challenger is None:
            continue
        served = services.deployer.current(model) if services.deployer else None
        models.append(ModelStatus(model, champion, challenger, served))
    active = [_line(r) for r in services.runbook.recent(50) if r.state not in FINAL_STATES]
    pending = services.approvals.pending() if services.approvals else []
    canaries = [
        CanaryLine(c.model, c.version, c.stable_version, c.steps, c.step, c.held)
        for c in (services.canaries.running() if services.canaries else [])
    ]
    return status_blocks(models, active, pending, canaries)


def _decide(cmd: GanopsCommand, services: Services, user: str, client: WebClient) -> list[Block]:
    if len(cmd.args) != 1:
        raise UsageError(f"/ganops {cmd.name} needs exactly one approval id", GANOPS_USAGE)
    if services.approvals is None:
        return text_blocks("Approvals are not configured in this bot.")
    outcome = services.approvals.decide(cmd.args[0], user, cmd.name, path="slash")
    show_decision(services.approvals, client, outcome)  # the card follows, as for a click
    return text_blocks(outcome.message or f"Done: {cmd.name}d.")
