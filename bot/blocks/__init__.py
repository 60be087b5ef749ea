"""Pure Block Kit builders: data in, typed `slack_sdk.models.blocks` objects out. No I/O.

One module per card family: `runs` (run progress, results card, run outcomes), `ops`
(`/ganops` answers and usage), `alarms` (drift alarms), `approvals` (decisions). Each builder
has a twin `*_text` for the notification text that clients without blocks show.
"""

from __future__ import annotations

from ganops.bot.blocks.common import (
    SECTION_LIMIT,
    at,
    blocks_to_dicts,
    clip,
    code,
    code_sections,
    escape,
    link,
    literal,
    section,
)

__all__ = [
    "SECTION_LIMIT",
    "at",
    "blocks_to_dicts",
    "clip",
    "code",
    "code_sections",
    "escape",
    "link",
    "literal",
    "section",
]
