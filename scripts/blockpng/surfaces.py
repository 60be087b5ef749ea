"""Views that are not messages, for `blockpng`: a modal (title bar, fields, Cancel / Submit)
and an App Home tab (the app's name and its tabs above the blocks). A likeness, as the rest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PIL import Image, ImageDraw

from blockpng.fonts import FontBook, draw_text
from blockpng.render import blocks_piece
from blockpng.text import BORDER, GREY, TEXT

PAD = 24
BAR_H = 60
_GREEN = (0, 122, 90)
_BACKDROP = (120, 118, 120)  # the dimmed channel behind a modal


def _plain(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, Mapping) else str(obj or "")


def _button(d: ImageDraw.ImageDraw, right: int, top: int, label: str, primary: bool,
            fonts: FontBook) -> int:  # fmt: skip
    """Draw a footer button ending at `right`; return its left edge."""
    font = fonts.font("bold", 14)
    w = round(d.textlength(label, font=font)) + 30
    fill, ink = (_GREEN, (255, 255, 255)) if primary else ((255, 255, 255), TEXT)
    d.rounded_rectangle((right - w, top, right, top + 34), 5, fill, _GREEN if primary else GREY)
    draw_text(d, (right - w + 15, top + 23), label, font, ink)
    return right - w


def render_modal(
    view: Mapping[str, Any], *, width: int = 560, fonts: FontBook | None = None
) -> Image.Image:
    """A modal as Slack draws it over a dimmed channel: title and ×, fields, footer."""
    fonts = fonts or FontBook()
    card_w = width - 2 * PAD
    body = blocks_piece(view.get("blocks") or [], card_w - 2 * PAD, fonts=fonts)
    foot_h = 66
    card_h = BAR_H + PAD + body.height + PAD + foot_h
    img = Image.new("RGB", (width, card_h + 2 * PAD), _BACKDROP)
    d = ImageDraw.Draw(img)
    left, top = PAD, PAD
    d.rounded_rectangle((left, top, left + card_w, top + card_h), 10, (255, 255, 255))
    draw_text(d, (left + PAD, top + 38), _plain(view.get("title")), fonts.font("bold", 20), TEXT)
    draw_text(d, (left + card_w - PAD - 12, top + 38), "×", fonts.font("regular", 22), GREY)
    d.line((left, top + BAR_H, left + card_w, top + BAR_H), fill=BORDER)
    body.paint(img, left + PAD, top + BAR_H + PAD)
    foot = top + card_h - foot_h
    d.line((left, foot, left + card_w, foot), fill=BORDER)
    right = left + card_w - PAD
    right = _button(d, right, foot + 16, _plain(view.get("submit")) or "Submit", True, fonts)
    _button(d, right - 10, foot + 16, _plain(view.get("close")) or "Cancel", False, fonts)
    return img


def render_home(
    view: Mapping[str, Any],
    *,
    app_name: str = "ganops",
    width: int = 760,
    users: Mapping[str, str] | None = None,
    fonts: FontBook | None = None,
) -> Image.Image:
    """An App Home tab: the app's name, its Home / About tabs, then the view's blocks."""
    fonts = fonts or FontBook()
    body = blocks_piece(view.get("blocks") or [], width - 2 * PAD, users=users, fonts=fonts)
    head_h = BAR_H + 36
    img = Image.new("RGB", (width, head_h + PAD + body.height + PAD), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((PAD, 14, PAD + 32, 46), 6, fill=(74, 21, 75))
    draw_text(d, (PAD + 44, 38), app_name, fonts.font("bold", 20), TEXT)
    tab_font = fonts.font("bold", 14)
    x = PAD
    for i, tab in enumerate(("Home", "About")):
        draw_text(d, (x, BAR_H + 20), tab, tab_font, TEXT if i == 0 else GREY)
        w = round(d.textlength(tab, font=tab_font))
        if i == 0:
            d.line((x, BAR_H + 33, x + w, BAR_H + 33), fill=_GREEN, width=3)
        x += w + 28
    d.line((0, head_h, width, head_h), fill=BORDER)
    body.paint(img, PAD, head_h + PAD)
    return img


__all__ = ["render_home", "render_modal"]
