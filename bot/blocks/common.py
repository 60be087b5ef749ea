"""What every card family shares: section text within Slack's limits, code spans, and the
one escape for text that comes from outside the bot (MLflow tags and params, gate reasons,
error messages, data URIs, what users typed, KFP and Prometheus labels)."""

from __future__ import annotations

import re

from slack_sdk.models.blocks import Block, MarkdownTextObject, SectionBlock

# Slack refuses a section text over 3000 characters and a message over 50 blocks.
SECTION_LIMIT = 3000


# A Slack user id as Slack sends it in payloads (U…/W…); only these become live mentions.
_USER_ID = re.compile(r"[UW][A-Z0-9_]{1,40}")


def escape(text: object) -> str:
    """`text` as mrkdwn shows it literally: `&`, `<` and `>` are the only characters Slack
    parses as control sequences (`<!channel>`, `<http://x|link>`, `<@U1>`), so a tag or an
    error message can neither ping the channel nor forge a link. Slack decodes these three
    entities everywhere, code spans included."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def at(user: str) -> str:
    """A live mention of a Slack user id; anything that is not an id is shown as text."""
    return f"<@{user}>" if _USER_ID.fullmatch(user) else escape(user)


def link(url: str | None, label: str) -> str:
    """`<url|label>` with the url escaped (a `|` or `>` in it would end the link early);
    `label` is mrkdwn the caller built. No url: the label alone."""
    if not url:
        return label
    return f"<{escape(url).replace('|', '%7C')}|{label}>"


def clip(text: str, limit: int = SECTION_LIMIT) -> str:
    """Shorten `text` to Slack's limit, saying that it was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 12].rstrip() + "\n… (cut)"


def section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(text)))


def code(text: str) -> str:
    """A monospace block of literal text (escaped here); backticks inside would end it early,
    so they are swapped out."""
    return "```" + escape(text).replace("```", "ˋˋˋ") + "```"


def literal(text: object) -> str:
    """An inline code span of literal text: `text`, escaped, with backticks swapped out."""
    return "`" + escape(text).replace("`", "ˋ") + "`"


def blocks_to_dicts(blocks: list[Block]) -> list[dict[str, object]]:
    return [b.to_dict() for b in blocks]
