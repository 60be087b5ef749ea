"""What every card family shares: section text within Slack's limits, code spans, and the
one escape for text that comes from outside the bot (MLflow tags and params, gate reasons,
error messages, data URIs, what users typed, KFP and Prometheus labels)."""

from __future__ import annotations

import re
from typing import Literal

from slack_sdk.models.blocks import Block, ConfirmObject, MarkdownTextObject, SectionBlock

# Slack refuses a section text over 3000 characters and a message over 50 blocks.
SECTION_LIMIT = 3000
# Long output splits into at most this many code sections; the rest is said to be cut, so a
# message with a title and a few other blocks stays far below Slack's 50.
MAX_CODE_SECTIONS = 12
FENCE = "```"
CUT = "… (cut)"

# A Slack user id as Slack sends it in payloads (U…/W…); only these become live mentions.
_USER_ID = re.compile(r"[UW][A-Z0-9_]{1,40}")
# An entity that a cut would split in two ("&am"): dropped whole.
_TORN_ENTITY = re.compile(r"&[a-z]{0,4}$")
# A mention or link that a cut would leave open ("<@U12", "<http://x|la"): dropped whole.
_TORN_ANGLE = re.compile(r"<[^>]*$")
_EDGE_TICK = re.compile(r"^`|`$")

Keep = Literal["head", "ends"]


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


def _cut(text: str, n: int) -> str:
    """The first `n` characters of escaped text, never ending inside an entity."""
    return _TORN_ENTITY.sub("", text[: max(0, n)])


def clip(text: str, limit: int = SECTION_LIMIT) -> str:
    """Shorten mrkdwn `text` to `limit`, saying that it was cut. A cut inside a code block
    closes the block, so what follows is not swallowed into (or out of) monospace."""
    if len(text) <= limit:
        return text
    room = limit - len(CUT) - 1 - len(FENCE)
    kept = _TORN_ANGLE.sub("", _cut(text, room)).rstrip()
    if kept.count(FENCE) % 2:
        return f"{kept}\n{CUT}{FENCE}"
    return f"{kept}\n{CUT}"


def section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(text)))


def _code_lines(text: str) -> list[str]:
    """Literal text as the lines of a code block: escaped, with backtick runs that could end
    the block swapped for a look-alike."""
    # A backtick at a line's end could meet a fence (a block starts or ends on any line
    # once output is split), so those are swapped too.
    lines = [
        _EDGE_TICK.sub("ˋ", escape(line).replace(FENCE, "ˋˋˋ")) for line in str(text).splitlines()
    ]
    return lines or [""]


def _fit_lines(lines: list[str], budget: int) -> list[str]:
    """Each line cut to `budget` characters (a single overlong line must still fit)."""
    return [line if len(line) <= budget else _cut(line, budget - 1) + "…" for line in lines]


def _head(lines: list[str], budget: int) -> tuple[list[str], int]:
    """As many leading lines as fit in `budget` (newlines counted); how many were left."""
    kept: list[str] = []
    used = 0
    for line in lines:
        cost = len(line) + (1 if kept else 0)
        if used + cost > budget:
            break
        kept.append(line)
        used += cost
    return kept, len(lines) - len(kept)


def _ends(body: str, budget: int) -> str:
    """The start and the end of escaped `body` with a marker between, cut at line breaks
    where one is near: an error's cause is at the top and its exception line at the bottom,
    so the end gets two thirds of the room."""
    marker = "\n… cut …\n"
    room = budget - len(marker)
    tail_room = room * 2 // 3
    head = _cut(body, room - tail_room)
    if (nl := head.rfind("\n")) > len(head) // 2:
        head = head[:nl]
    start = len(body) - tail_room
    if (amp := body.rfind("&", max(0, start - 5), start)) != -1 and ";" not in body[amp:start]:
        start = body.index(";", start) + 1  # do not start inside an entity
    tail = body[start:]
    if 0 <= (nl := tail.find("\n")) < len(tail) // 3:
        tail = tail[nl + 1 :]
    return head + marker + tail


def code(text: str, limit: int = SECTION_LIMIT, keep: Keep = "head") -> str:
    """A monospace block of literal text (escaped here), at most `limit` characters with its
    fences. Too long: cut inside the fences, keeping the start (`keep="head"`) or the start
    and the end (`keep="ends"`, for errors: the exception line is last)."""
    budget = limit - 2 * len(FENCE)
    lines = _code_lines(text)
    body = "\n".join(lines)
    if len(body) > budget:
        if keep == "ends":
            return FENCE + _ends(body, budget) + FENCE
        lines, _ = _head(_fit_lines(lines, budget - len(CUT) - 1), budget - len(CUT) - 1)
        body = "\n".join([*lines, CUT])
    return FENCE + body + FENCE


def code_sections(
    text: str, limit: int = SECTION_LIMIT, max_sections: int = MAX_CODE_SECTIONS
) -> list[Block]:
    """Long literal text (an audit log, a listing) as consecutive code sections, each within
    Slack's limit with its fences balanced; lines are never split between sections. Past
    `max_sections` the last section says how many lines were left out."""
    budget = limit - 2 * len(FENCE)
    lines = _fit_lines(_code_lines(text), budget)
    chunks: list[list[str]] = []
    while lines and len(chunks) < max_sections:
        chunk, _ = _head(lines, budget)
        chunks.append(chunk)
        lines = lines[len(chunk) :]
    if lines:
        last, note = chunks[-1], f"… {len(lines)} more lines cut"
        while last and sum(len(x) + 1 for x in last) + len(note) > budget:
            lines.insert(0, last.pop())
            note = f"… {len(lines)} more lines cut"
        last.append(note)
    return [
        SectionBlock(text=MarkdownTextObject(text=FENCE + "\n".join(c) + FENCE)) for c in chunks
    ]


def confirm_dialog(
    *, title: str, text: str, confirm: str, deny: str, danger: bool = False
) -> ConfirmObject:
    """Slack's "are you sure?" dialog, within its limits: a plain title of 100 characters
    (escaped here: it names models, and Slack decodes the entities in plain text too), mrkdwn
    `text` of 300 (built by the caller, outside values escaped), buttons of 30."""
    plain = escape(title)
    plain = plain if len(plain) <= 100 else _cut(plain, 99) + "…"
    return ConfirmObject(
        title=plain,
        text=clip(text, 300),
        confirm=confirm[:30],
        deny=deny[:30],
        style="danger" if danger else None,
    )


def literal(text: object) -> str:
    """An inline code span of literal text: `text`, escaped, with backticks swapped out."""
    return "`" + escape(text).replace("`", "ˋ") + "`"


def blocks_to_dicts(blocks: list[Block]) -> list[dict[str, object]]:
    return [b.to_dict() for b in blocks]
