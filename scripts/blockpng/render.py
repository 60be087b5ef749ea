"""Draw a Slack Block Kit message as a PNG-ready picture, with Pillow only (no browser).

For the README's pictures and for eyeballing cards: `render_message` draws the bot's name, the
APP badge and the time, then each block (header, section text and fields, context, divider,
actions, image, input; anything else as a labelled placeholder), then the files attached to the
message, then the thread replies with their files, the way Slack shows uploads in a thread.
It is a likeness, not Slack's layout engine. Pillow only: no torch, no network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw

from blockpng.fonts import FontBook, draw_text
from blockpng.inputs import input_piece
from blockpng.piece import Piece, column
from blockpng.text import BORDER, GREY, TEXT, Style, TextBox, layout

Blocks = Sequence[Mapping[str, Any]]
PAD = 20
AVATAR = 36
GAP = 8  # between blocks
IMAGE_MAX_H = 300
_BUTTON = {  # style -> (fill, outline, text colour); Slack's palette
    "primary": ((0, 122, 90), (0, 122, 90), (255, 255, 255)),
    "danger": ((224, 30, 90), (224, 30, 90), (255, 255, 255)),
    "": ((255, 255, 255), (190, 190, 190), TEXT),
}


@dataclass(frozen=True)
class Reply:
    """A message in the thread under the main one: text and/or blocks, and uploaded files."""

    text: str = ""
    blocks: Blocks = ()
    images: Mapping[str, Image.Image] = field(default_factory=dict)  # file title -> picture
    time_label: str = ""


def render_message(
    blocks: Blocks,
    text: str,
    *,
    images: Mapping[str, Image.Image] | None = None,
    width: int = 720,
    replies: Sequence[Reply] = (),
    users: Mapping[str, str] | None = None,
    time_label: str = "",
    app_name: str = "ganops",
    fonts: FontBook | None = None,
) -> Image.Image:
    """The message as an RGB picture `width` pixels wide; its height follows the content.

    `images` maps an image block's `image_url` (or alt text) to its picture; the images no
    block names are drawn as files attached to the message, titled by their key. `users` maps
    user ids to names for <@U…> mentions. With no blocks, `text` is drawn as mrkdwn.
    """
    fonts = fonts or FontBook()
    inner = width - PAD - AVATAR - GAP - PAD
    r = _Renderer(fonts, inner, users or {})
    pieces = [_message(r, app_name, time_label, blocks, text, images or {})]
    if replies:
        pieces.append(_thread_rule(fonts, width, len(replies)))
        pieces += [_message(r, app_name, x.time_label, x.blocks, x.text, x.images) for x in replies]
    height = sum(p.height for p in pieces)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    y = 0
    for p in pieces:
        p.paint(img, 0, y)
        y += p.height
    return img


def _message(
    r: _Renderer,
    app_name: str,
    time_label: str,
    blocks: Blocks,
    text: str,
    images: Mapping[str, Image.Image],
) -> Piece:
    body = [r.block(b, images) for b in blocks] if blocks else [r.text_piece(text)]
    used = r.used
    body += [r.file(title, pic) for title, pic in images.items() if title not in used]
    name_h = 24
    height = 12 + name_h + sum(p.height + GAP for p in body) + 6

    def paint(img: Image.Image, x: int, y: int) -> None:
        _avatar(img, x + PAD, y + 14, r.fonts)
        left = x + PAD + AVATAR + GAP
        _name_line(img, left, y + 12, app_name, time_label, r.fonts)
        top = y + 12 + name_h
        for p in body:
            p.paint(img, left, top)
            top += p.height + GAP

    return Piece(height, paint)


def _avatar(img: Image.Image, x: int, y: int, fonts: FontBook) -> None:
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((x, y, x + AVATAR, y + AVATAR), 6, fill=(74, 21, 75))
    d.ellipse((x + 7, y + 9, x + 21, y + 23), outline=(54, 197, 240), width=3)
    d.ellipse((x + 15, y + 13, x + 29, y + 27), outline=(236, 178, 46), width=3)


def _name_line(img: Image.Image, x: int, y: int, name: str, clock: str, fonts: FontBook) -> None:
    d = ImageDraw.Draw(img)
    bold = fonts.font("bold", 15)
    draw_text(d, (x, y + 16), name, bold, TEXT)
    x += round(d.textlength(name, font=bold)) + 6
    badge = fonts.font("bold", 10)
    w = round(d.textlength("APP", font=badge)) + 8
    d.rounded_rectangle((x, y + 4, x + w, y + 18), 3, fill=(232, 232, 232))
    draw_text(d, (x + 4, y + 15), "APP", badge, GREY)
    if clock:
        draw_text(d, (x + w + 8, y + 16), clock, fonts.font("regular", 12), GREY)


def _thread_rule(fonts: FontBook, width: int, count: int) -> Piece:
    label = f"{count} repl{'y' if count == 1 else 'ies'}"

    def paint(img: Image.Image, x: int, y: int) -> None:
        d = ImageDraw.Draw(img)
        font = fonts.font("regular", 13)
        draw_text(d, (x + PAD, y + 18), label, font, GREY)
        start = x + PAD + round(d.textlength(label, font=font)) + 10
        d.line((start, y + 13, x + width - PAD, y + 13), fill=BORDER)

    return Piece(26, paint)


class _Renderer:
    """Lays out blocks for the content column; remembers which images blocks used."""

    def __init__(self, fonts: FontBook, width: int, users: Mapping[str, str]) -> None:
        self.fonts = fonts
        self.width = width
        self.users = users
        self.used: set[str] = set()

    def block(self, block: Mapping[str, Any], images: Mapping[str, Image.Image]) -> Piece:
        kind = str(block.get("type", ""))
        if kind == "header":
            return self.text_obj(block.get("text"), Style(size=18, bold=True))
        if kind == "section":
            return self.section(block)
        if kind == "context":
            return self.context(block)
        if kind == "divider":
            return Piece(
                9,
                lambda img, x, y: ImageDraw.Draw(img).line(
                    (x, y + 4, x + self.width, y + 4), fill=BORDER
                ),
            )
        if kind == "actions":
            return self.actions(block.get("elements") or [])
        if kind == "image":
            return self.image_block(block, images)
        if kind == "input":
            return input_piece(self.fonts, self.width, block)
        return self.placeholder(f"unsupported block: {kind or '?'}")

    # -- text ---------------------------------------------------------------------------
    def boxes(self, obj: Any, style: Style, width: int) -> list[TextBox]:
        if not isinstance(obj, Mapping):
            return []
        plain = obj.get("type") == "plain_text"
        return layout(str(obj.get("text", "")), width, self.fonts, style, self.users, plain)

    def stack(self, boxes: list[TextBox], width: int) -> Piece:
        height = sum(b.height for b in boxes) + 6 * max(0, len(boxes) - 1)

        def paint(img: Image.Image, x: int, y: int) -> None:
            for b in boxes:
                b.draw(img, x, y, width)
                y += b.height + 6

        return Piece(height, paint)

    def text_obj(self, obj: Any, style: Style | None = None) -> Piece:
        return self.stack(self.boxes(obj, style or Style(), self.width), self.width)

    def text_piece(self, text: str) -> Piece:
        return self.text_obj({"type": "mrkdwn", "text": text})

    def section(self, block: Mapping[str, Any]) -> Piece:
        parts: list[Piece] = []
        if block.get("text"):
            parts.append(self.text_obj(block["text"]))
        fields = list(block.get("fields") or [])
        if fields:
            parts.append(self.fields(fields))
        return column(parts, 8)

    def fields(self, fields: list[Any]) -> Piece:
        col = (self.width - 16) // 2
        rows = [
            [self.stack(self.boxes(f, Style(), col), col) for f in fields[i : i + 2]]
            for i in range(0, len(fields), 2)
        ]
        heights = [max(p.height for p in row) for row in rows]

        def paint(img: Image.Image, x: int, y: int) -> None:
            for row, h in zip(rows, heights, strict=True):
                for i, p in enumerate(row):
                    p.paint(img, x + i * (col + 16), y)
                y += h + 10

        return Piece(sum(heights) + 10 * (len(rows) - 1), paint)

    def context(self, block: Mapping[str, Any]) -> Piece:
        small = Style(size=12, color=GREY)
        texts = [e for e in block.get("elements") or [] if e.get("type") != "image"]
        joined = "   ".join(str(e.get("text", "")) for e in texts)
        plain = all(e.get("type") == "plain_text" for e in texts)
        obj = {"type": "plain_text" if plain else "mrkdwn", "text": joined}
        return self.stack(self.boxes(obj, small, self.width), self.width)

    # -- buttons, images, placeholders ---------------------------------------------------
    def actions(self, elements: list[Any]) -> Piece:
        font = self.fonts.font("bold", 14)
        measure = ImageDraw.Draw(Image.new("1", (1, 1)))
        spots: list[tuple[int, int, str, str, int]] = []  # x, row, label, style, width
        x = row = 0
        for e in elements:
            label, style = _element_label(e)
            w = round(measure.textlength(label, font=font)) + 26
            if x and x + w > self.width:
                x, row = 0, row + 1
            spots.append((x, row, label, style, w))
            x += w + 8
        rows = (spots[-1][1] + 1) if spots else 0

        def paint(img: Image.Image, x0: int, y0: int) -> None:
            d = ImageDraw.Draw(img)
            for bx, brow, label, style, w in spots:
                fill, outline, ink = _BUTTON.get(style, _BUTTON[""])
                top = y0 + 2 + brow * 38
                d.rounded_rectangle((x0 + bx, top, x0 + bx + w, top + 30), 4, fill, outline)
                draw_text(d, (x0 + bx + 13, top + 20), label, font, ink)
                if self.fonts.faux_bold("bold"):
                    draw_text(d, (x0 + bx + 14, top + 20), label, font, ink)

        return Piece(rows * 38, paint)

    def image_block(self, block: Mapping[str, Any], images: Mapping[str, Image.Image]) -> Piece:
        title = (block.get("title") or {}).get("text", "")
        for key in (block.get("image_url"), block.get("alt_text")):
            if isinstance(key, str) and key in images:
                self.used.add(key)
                return self.file(title, images[key])
        return self.placeholder(f"image: {block.get('alt_text') or block.get('image_url')}")

    def file(self, title: str, pic: Image.Image) -> Piece:
        """A picture as Slack shows an upload: its title, then a bordered, rounded preview."""
        scale = min(1.0, self.width / pic.width, IMAGE_MAX_H / pic.height)
        size = (max(1, round(pic.width * scale)), max(1, round(pic.height * scale)))
        thumb = pic.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        label = (
            self.stack(
                layout(title, self.width, self.fonts, Style(13, GREY), plain=True), self.width
            )
            if title
            else Piece(0, lambda *_: None)
        )

        def paint(img: Image.Image, x: int, y: int) -> None:
            label.paint(img, x, y)
            top = y + label.height + (4 if title else 0)
            mask = Image.new("L", size, 0)
            ImageDraw.Draw(mask).rounded_rectangle((0, 0, size[0] - 1, size[1] - 1), 8, 255)
            img.paste(thumb, (x, top), mask)
            ImageDraw.Draw(img).rounded_rectangle(
                (x, top, x + size[0] - 1, top + size[1] - 1), 8, outline=BORDER
            )

        return Piece(label.height + (4 if title else 0) + size[1], paint)

    def placeholder(self, label: str) -> Piece:
        def paint(img: Image.Image, x: int, y: int) -> None:
            d = ImageDraw.Draw(img)
            right, bottom = x + self.width - 1, y + 35
            for a in range(x, right, 10):  # dashed frame
                d.line((a, y, min(a + 5, right), y), fill=GREY)
                d.line((a, bottom, min(a + 5, right), bottom), fill=GREY)
            for b in range(y, bottom, 10):
                d.line((x, b, x, min(b + 5, bottom)), fill=GREY)
                d.line((right, b, right, min(b + 5, bottom)), fill=GREY)
            draw_text(d, (x + 10, y + 23), label, self.fonts.font("italic", 13), GREY)

        return Piece(36, paint)


def _element_label(element: Any) -> tuple[str, str]:
    """A button's text and style; other interactive elements look like plain buttons."""
    if not isinstance(element, Mapping):
        return "?", ""
    obj = element.get("text") or element.get("placeholder") or {}
    label = str(obj.get("text", "")) if isinstance(obj, Mapping) else str(obj)
    if element.get("type") != "button":
        label = (label or str(element.get("type", "?"))) + " ▾"
    return label or "?", str(element.get("style", ""))


def blocks_piece(
    blocks: Blocks, width: int, *, users: Mapping[str, str] | None = None, fonts: FontBook
) -> Piece:
    """Blocks alone, `width` pixels wide: the body of a modal or a Home tab (`surfaces`)."""
    r = _Renderer(fonts, width, users or {})
    return column([r.block(b, {}) for b in blocks], GAP + 4)


__all__ = ["Piece", "Reply", "blocks_piece", "render_message"]
