"""Block Kit → readable terminal text, for the shell adapter. Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_EMOJI = {
    ":white_check_mark:": "✅",
    ":x:": "❌",
    ":no_entry:": "⛔",
    ":warning:": "⚠️ ",
    ":rocket:": "🚀",
    ":hourglass:": "⏳",
    ":hourglass_flowing_sand:": "⏳",
    ":arrows_counterclockwise:": "🔄",
    ":black_square_for_stop:": "⏹",
    ":rotating_light:": "🚨",
    ":zzz:": "💤",
    ":no_bell:": "🔕",
    ":rewind:": "⏪",
    ":fast_forward:": "⏩",
    ":hatching_chick:": "🐣",
    ":package:": "📦",
    ":grey_question:": "❔",
}
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")
_BARE_LINK = re.compile(r"<(https?://[^|>]+)>")
_MENTION = re.compile(r"<@([A-Z0-9_]+)>")
_GROUP = re.compile(r"<!subteam\^([A-Z0-9_]+)>")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")


@dataclass(frozen=True)
class Button:
    """A button, or one option of a menu (a static select): the shell numbers each."""

    action_id: str
    text: str
    value: str
    block_id: str
    kind: str = "button"  # or "static_select": a pick sends `selected_option`


def mrkdwn(text: str, names: dict[str, str] | None = None) -> str:
    """Slack mrkdwn as plain text: links, mentions, bold, emoji codes; code fences kept."""
    names = names or {}
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", text)
    text = _BARE_LINK.sub(lambda m: m.group(1), text)
    text = _MENTION.sub(lambda m: "@" + names.get(m.group(1), m.group(1)), text)
    text = _GROUP.sub(lambda m: "@group:" + m.group(1), text)
    text = _BOLD.sub(lambda m: m.group(1), text)
    for code, glyph in _EMOJI.items():
        text = text.replace(code, glyph)
    text = text.replace("```", "")
    # What Slack does last: the entities the bot escapes (`bot.blocks.common.escape`).
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text_of(obj: Any) -> str:
    if isinstance(obj, dict):
        return str(obj.get("text") or "")
    return str(obj or "")


def render(
    message: dict[str, Any], names: dict[str, str] | None = None
) -> tuple[list[str], list[Button]]:
    """The lines of a message and its buttons, in order."""
    lines: list[str] = []
    buttons: list[Button] = []
    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"== {mrkdwn(_text_of(block.get('text')), names)} ==")
        elif kind == "section":
            if block.get("text"):
                lines += mrkdwn(_text_of(block["text"]), names).splitlines()
            for f in block.get("fields") or []:
                lines += ["  " + line for line in mrkdwn(_text_of(f), names).splitlines()]
        elif kind == "context":
            parts = [mrkdwn(_text_of(e), names) for e in block.get("elements") or []]
            lines.append("  (" + " ".join(p for p in parts if p) + ")")
        elif kind == "divider":
            lines.append("─" * 40)
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}] {block.get('image_url', '')}")
        elif kind == "actions":
            for e in block.get("elements") or []:
                if e.get("type") == "button":
                    buttons.append(
                        Button(
                            e.get("action_id", ""),
                            _text_of(e.get("text")),
                            e.get("value", ""),
                            block.get("block_id", ""),
                        )
                    )
                elif e.get("type") == "static_select":
                    buttons += [
                        Button(
                            e.get("action_id", ""),
                            _text_of(o.get("text")),
                            o.get("value", ""),
                            block.get("block_id", ""),
                            kind="static_select",
                        )
                        for o in e.get("options") or []
                    ]
    if not lines and message.get("text", "").strip():
        lines = mrkdwn(message["text"], names).splitlines()
    return lines, buttons
