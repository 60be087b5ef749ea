"""The only way to register a listener: `gated(app, entry_id, ...)`.

It reads the entry point from `bot.gate.ENTRY_POINTS` (an undeclared id fails at start-up)
and registers the Bolt listener with a `GateMiddleware`, which runs before the ack:
- a command typed outside the configured channels gets a pointer to the right one (audited);
- an action the actor alone decides (approver-only: rollback, snooze, Retrain now…) is
  authorized here, so the listener never runs for a refused user; the refusal is audited and
  told to them alone after the ack;
- every other action (the bounds of a retrain, the requester of a cancel, the approval book's
  rules) finds `context["entry"]` and is authorized by its listener through `gate_of(context)`.
A test walks `app._listeners` and fails on any listener without a `GateMiddleware`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware

from ganops.bot.blocks.ops import channel_pointer_text, refusal_text
from ganops.bot.gate import BY_SUBCOMMAND, EntryPoint, Gate, action_of, entry
from ganops.bot.parsing import parse_ganops
from ganops.bot.policy import RULES

Matcher = Callable[..., bool]


class GateMiddleware(Middleware):
    """The gate in front of one listener; `point` is its declared entry point."""

    def __init__(self, point: EntryPoint) -> None:
        self.point = point

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        context, body = req.context, req.body
        gate: Gate = context["gate"]
        context["entry"] = self.point
        actor = _actor(body)
        text = str(body.get("text") or "")
        sub = parse_ganops(text).name if self.point.action == BY_SUBCOMMAND else ""
        action = action_of(self.point, sub)
        if self.point.in_channel and not gate.in_channel(str(body.get("channel_id") or "")):
            return _point_elsewhere(gate, self.point, actor, str(body.get("channel_id") or ""))
        if RULES[action].check != "approver":
            next()  # the listener authorizes with what only it knows (params, requester)
            return None
        obj = _object(body, text)
        verdict = gate.authorize(actor=actor, action=action, path=self.point.path, obj=obj)
        if verdict.allowed:
            next()
            return None
        channel = _channel(body)
        client = context.client
        if channel and client is not None:
            gate.defer(
                lambda: client.chat_postEphemeral(
                    channel=channel, user=actor, text=refusal_text(verdict.reason)
                )
            )
        return BoltResponse(status=200, body="")  # the ack: the listener never runs


def gated(
    app: App,
    entry_id: str,
    *,
    matchers: Sequence[Matcher] | None = None,
) -> Callable[..., Any]:
    """Bolt's `app.command/action/view_submission/event(trigger)` for a declared entry point,
    with its `GateMiddleware`. Use it as Bolt's own: `gated(app, id)(ack=..., lazy=[...])`."""
    point = entry(entry_id)
    middleware = [GateMiddleware(point)]
    register = {
        "command": app.command,
        "action": app.action,
        "view": app.view_submission,
        "event": app.event,
    }.get(point.kind)
    if register is None:
        raise ValueError(f"{entry_id!r} is a {point.kind} entry point, not a Bolt listener")
    decorator: Callable[..., Any] = register(
        point.trigger, matchers=matchers, middleware=middleware
    )
    return decorator


def gate_middleware(listener: Any) -> GateMiddleware | None:
    """The gate of a registered Bolt listener, or None (what the registry test looks for)."""
    found = [m for m in getattr(listener, "middleware", []) if isinstance(m, GateMiddleware)]
    return found[0] if len(found) == 1 else None


def _actor(body: dict[str, Any]) -> str:
    user = body.get("user_id") or (body.get("user") or {}).get("id")
    event = body.get("event") or {}
    return str(user or event.get("user") or "")


def _channel(body: dict[str, Any]) -> str:
    found = body.get("channel_id") or (body.get("channel") or {}).get("id")
    return str(found or (body.get("container") or {}).get("channel_id") or "")


def _object(body: dict[str, Any], text: str) -> str:
    """What the audit row names: a button's value, or the command's arguments."""
    actions = body.get("actions") or []
    if actions:
        # A menu (the snooze lengths) carries its value in the chosen option.
        value = actions[0].get("value") or (actions[0].get("selected_option") or {}).get("value")
        return str(value or "")
    words = text.split()
    return " ".join(words[1:]) or str(body.get("command") or "")


def _point_elsewhere(gate: Gate, point: EntryPoint, actor: str, channel: str) -> BoltResponse:
    command = point.trigger
    detail = {"reason": f"{command} outside GANOPS_CHANNEL", "bound": "GANOPS_CHANNEL"}
    gate.store.audit(actor, action_of(point), channel, "refused", detail, path=point.path)
    answer = {"response_type": "ephemeral", "text": channel_pointer_text(command, gate.channels)}
    return BoltResponse(status=200, body=answer)


__all__ = ["GateMiddleware", "gate_middleware", "gated"]
