"""Pure builder for the message that start-up reconciliation posts: what a restart found
half done, what the bot did about it, and where serving and the champion alias ended."""

from __future__ import annotations

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject

from ganops.bot.blocks.common import section


def _plain(text: str) -> str:
    # Deploy messages carry server log tails: no mrkdwn control from them.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def reconcile_text(*, model: str, served: str | None, champion: str | None) -> str:
    """The notification line (also the fallback text of the blocks)."""
    if served is not None and served == champion:
        return f"After a restart, {model}: v{served} serves and is champion again."
    now = f"v{served}" if served is not None else "nothing"
    boss = f"v{champion}" if champion is not None else "none"
    return f"After a restart, {model} still disagrees: {now} serves, the champion is {boss}."


def reconcile_blocks(
    *,
    model: str,
    reason: str,
    served: str | None,
    champion: str | None,
    results: tuple[str, ...] = (),
) -> list[Block]:
    """`results` are the deployers' one-line messages, in the order the deploys ran."""
    head = reconcile_text(model=model, served=served, champion=champion)
    found = f"*{_plain(head)}*\nI found that {_plain(reason)}."
    blocks: list[Block] = [section(found)]
    if results:
        lines = "\n".join(f"• {_plain(line)}" for line in results)
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=lines[:2900])]))
    return blocks
