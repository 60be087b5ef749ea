"""What every card family shares: section text within Slack's limits, code spans."""

from __future__ import annotations

from slack_sdk.models.blocks import Block, MarkdownTextObject, SectionBlock

# Slack refuses a section text over 3000 characters and a message over 50 blocks.
SECTION_LIMIT = 3000


def clip(text: str, limit: int = SECTION_LIMIT) -> str:
    """Shorten `text` to Slack's limit, saying that it was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 12].rstrip() + "\n… (cut)"


def section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(text)))


def code(text: str) -> str:
    """A monospace block; backticks inside would end it early, so they are swapped out."""
    return "```" + text.replace("```", "ˋˋˋ") + "```"


def blocks_to_dicts(blocks: list[Block]) -> list[dict[str, object]]:
    return [b.to_dict() for b in blocks]
