"""`/ganops rollback [model] [version]`: ask for an approval to serve an earlier version.

A rollback is a deploy of an older version, so it takes the same approval path as a new
challenger: an approval of kind "rollback", a card with Approve / Reject, one decision.
"""

from __future__ import annotations

from slack_sdk.models.blocks import Block

from ganops.bot.approvals.book import NothingToRollBack
from ganops.bot.blocks import blocks_to_dicts
from ganops.bot.blocks.ops import rollback_card, rollback_text, text_blocks
from ganops.bot.errors import UsageError
from ganops.bot.parsing import GANOPS_USAGE
from ganops.bot.services import Services
from ganops.model.registry import CHAMPION
from ganops.pipeline.params import MODELS


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


def request_rollback(
    services: Services, args: tuple[str, ...], user: str, channel: str
) -> list[Block]:
    model, version = parse_rollback(args)
    if services.approvals is None:
        return text_blocks("Approvals are not configured in this bot, so rollbacks cannot run.")
    champion = services.registry.get_alias(model, CHAMPION)
    current = champion.version if champion else None
    if version is not None and version == current:
        return text_blocks(f"`{model}` v{version} is already the champion.")
    try:
        approval = services.approvals.request_rollback(model, user, version, channel)
    except NothingToRollBack as exc:
        return text_blocks(
            f"{exc}. See `/ganops models {model}`, then `/ganops rollback {model} N`."
        )
    target = approval.version
    blocks = rollback_card(model, target, current, user, approval.approval_id)
    resp = services.slack.chat_postMessage(
        channel=channel,
        text=rollback_text(model, target, current),
        blocks=blocks,
    )
    services.approvals.attach_message(
        approval.approval_id, channel, str(resp["ts"]), blocks_to_dicts(blocks)
    )
    return text_blocks(
        f"Asked for a rollback of `{model}` to v{target}; an approver decides on the card."
    )
