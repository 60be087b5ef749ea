"""`/ganops rollback [model] [version] [force=true reason="…"]`: ask for an approval to serve
an earlier version.

A rollback is a deploy of an older version, so it takes the same approval path as a new
challenger: an approval of kind "rollback", a card with Approve / Reject, one decision. The
approval carries the champion it replaces and goes stale if a newer deploy comes first.
A version whose evaluation gate failed (`gate_passed=false` on the MLflow version) is refused
unless the approver asks with `force=true` and a `reason="…"`, which is audited and shown on
the card.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from slack_sdk.models.blocks import Block

from ganops.bot.approvals.book import NothingToRollBack
from ganops.bot.blocks import blocks_to_dicts
from ganops.bot.blocks.approvals import forced_note, gate_failed_refusal
from ganops.bot.blocks.ops import rollback_card, rollback_text, text_blocks
from ganops.bot.errors import UsageError
from ganops.bot.parsing import GANOPS_USAGE
from ganops.bot.services import Services
from ganops.model.registry import CHAMPION
from ganops.pipeline.params import MODELS

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


@dataclass(frozen=True)
class RollbackRequest:
    model: str = "cut"
    version: str | None = None  # None: the previous champion
    force: bool = False  # past a failed gate (an approver, with a reason)
    reason: str | None = None


def parse_rollback(args: tuple[str, ...]) -> tuple[str, str | None]:
    """`[model] [version]` in any order; the model defaults to cut, the version to the
    previous champion."""
    model, version = "cut", None
    for arg in args:
        word = arg.lower()
        if word in MODELS:
            model = word
        elif word.removeprefix("v").isdigit() and version is None:
            version = word.removeprefix("v")
        else:
            raise UsageError(f"rollback takes [model] [version], got {arg!r}", GANOPS_USAGE)
    return model, version


def parse_rollback_request(args: tuple[str, ...]) -> RollbackRequest:
    """`parse_rollback`'s words plus `force=true|false` and `reason="…"` (quotes may hold
    spaces: Slack's words are joined again and split the way a shell would)."""
    try:
        words = shlex.split(" ".join(args))
    except ValueError as exc:
        raise UsageError(
            f'rollback: {exc} (close the quotes of reason="…")', GANOPS_USAGE
        ) from None
    keys = {w.split("=", 1)[0].lower(): w.split("=", 1)[1] for w in words if "=" in w}
    unknown = sorted(set(keys) - {"force", "reason"})
    if unknown:
        raise UsageError(f"rollback takes force= and reason=, not {unknown[0]}=", GANOPS_USAGE)
    force = keys.get("force", "false").lower()
    if force not in _TRUE + _FALSE:
        raise UsageError(f"force= takes true or false, got {force!r}", GANOPS_USAGE)
    reason = (keys.get("reason") or "").strip() or None
    model, version = parse_rollback(tuple(w for w in words if "=" not in w))
    return RollbackRequest(model, version, force in _TRUE, reason)


def request_rollback(
    services: Services, args: tuple[str, ...], user: str, channel: str
) -> list[Block]:
    req = parse_rollback_request(args)
    model, version = req.model, req.version
    if req.force and req.reason is None:
        raise UsageError('force=true needs a reason="…" (it goes on the record)', GANOPS_USAGE)
    book = services.approvals
    if book is None:
        return text_blocks("Approvals are not configured in this bot, so rollbacks cannot run.")
    champion = services.registry.get_alias(model, CHAMPION)
    current = champion.version if champion else None
    if version is not None and version == current:
        return text_blocks(f"`{model}` v{version} is already the champion.")
    try:
        target = book.rollback_target(model, version)
    except NothingToRollBack as exc:
        return text_blocks(
            f"{exc}. See `/ganops models {model}`, then `/ganops rollback {model} N`."
        )
    gate_reason = target.tags.get("gate_reason") or "no reason recorded"
    gate_failed = str(target.tags.get("gate_passed", "")).lower() == "false"
    obj = f"{model} v{target.version}"
    if gate_failed and not req.force:
        detail = {"reason": "the gate failed", "gate_reason": gate_reason, "bound": "gate"}
        services.store.audit(user, "rollback", obj, "refused", detail, path="slash")
        return gate_failed_refusal(model, target.version, gate_reason)
    approval = book.request_rollback(model, user, target.version, channel)
    blocks = rollback_card(model, approval.version, current, user, approval.approval_id)
    if gate_failed:
        forced: dict[str, str | None] = {
            "reason": req.reason,
            "gate_reason": gate_reason,
            "approval": approval.approval_id,
        }
        services.store.audit(user, "rollback_force", obj, "forced", forced, path="slash")
        blocks = [*blocks, forced_note(user, req.reason or "", gate_reason)]
    resp = services.slack.chat_postMessage(
        channel=channel,
        text=rollback_text(model, approval.version, current),
        blocks=blocks,
    )
    book.attach_message(approval.approval_id, channel, str(resp["ts"]), blocks_to_dicts(blocks))
    return text_blocks(
        f"Asked for a rollback of `{model}` to v{approval.version}; an approver decides on the card."
    )
