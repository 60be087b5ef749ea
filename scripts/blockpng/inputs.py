"""Input blocks (a modal's fields) for `blockpng.render`: the label, the field as a bordered
box holding its value or its grey placeholder (a select with ▾), and the hint below."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PIL import Image, ImageDraw

from blockpng.fonts import FontBook, draw_text
from blockpng.piece import Piece
from blockpng.text import GREY, TEXT, Style, layout

FIELD_H = 36


def _text_of(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, Mapping) else str(obj or "")


def field_content(element: Mapping[str, Any]) -> tuple[str, bool]:
    """(what the field shows, whether it is a value rather than a placeholder)."""
    picked = element.get("initial_option")
    if isinstance(picked, Mapping):
        return _text_of(picked.get("text")), True
    if element.get("initial_value"):
        return str(element["initial_value"]), True
    return _text_of(element.get("placeholder")), False


def input_piece(fonts: FontBook, width: int, block: Mapping[str, Any]) -> Piece:
    element = block.get("element") or {}
    label = _text_of(block.get("label"))
    optional = " (optional)" if block.get("optional") else ""
    hint = layout(_text_of(block.get("hint")), width, fonts, Style(12, GREY), plain=True)
    hint_h = sum(b.height for b in hint)
    content, is_value = field_content(element)
    select = str(element.get("type", "")).endswith("select")

    def paint(img: Image.Image, x: int, y: int) -> None:
        d = ImageDraw.Draw(img)
        bold = fonts.font("bold", 15)
        draw_text(d, (x, y + 15), label, bold, TEXT)
        if optional:
            at = x + round(d.textlength(label, font=bold))
            draw_text(d, (at, y + 15), optional, fonts.font("regular", 13), GREY)
        top = y + 24
        d.rounded_rectangle((x, top, x + width - 1, top + FIELD_H), 5, (255, 255, 255), GREY)
        font = fonts.font("regular", 14)
        draw_text(d, (x + 12, top + 23), content, font, TEXT if is_value else GREY)
        if select:
            draw_text(d, (x + width - 24, top + 23), "▾", font, TEXT)
        at_y = top + FIELD_H + 6
        for box in hint:
            box.draw(img, x, at_y, width)
            at_y += box.height

    return Piece(24 + FIELD_H + (6 + hint_h if hint else 0), paint)


__all__ = ["FIELD_H", "field_content", "input_piece"]
