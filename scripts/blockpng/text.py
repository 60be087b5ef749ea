"""Text for `blockpng.render`: Slack mrkdwn parsed into styled runs, wrapped to a width.

Best effort, for pictures of messages only: *bold*, _italic_, ~strike~, `code`, ```pre```,
<@U…> mentions, <url|label> links and the emoji shortcodes `blockpng.fonts` can draw.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from PIL import Image, ImageDraw

from blockpng.fonts import EMOJI, RGB, Font, FontBook, draw_text

TEXT: RGB = (29, 28, 29)
GREY: RGB = (97, 96, 97)
LINK: RGB = (18, 100, 163)
CODE_RED: RGB = (224, 30, 90)
CODE_BG: RGB = (246, 246, 246)
BORDER: RGB = (221, 221, 221)
MENTION_BG: RGB = (232, 245, 250)


@dataclass(frozen=True)
class Style:
    size: int = 15
    color: RGB = TEXT
    bold: bool = False
    italic: bool = False
    strike: bool = False
    code: bool = False
    mention: bool = False

    @property
    def face(self) -> str:
        if self.code:
            return "mono"
        return ("bold" if self.bold else "") + ("italic" if self.italic else "") or "regular"


@dataclass(frozen=True)
class Run:
    text: str
    style: Style
    emoji: bool = False  # text is a shortcode name, drawn as an icon


_INLINE = re.compile(
    r"(?P<code>`[^`\n]+`)"
    r"|(?P<angle><[^<>\n]+>)"
    r"|(?P<emoji>:[a-z0-9_+\-]+:)"
    r"|(?P<bold>(?<![\w*])\*(?=\S)[^*\n]+?(?<=\S)\*(?![\w*]))"
    r"|(?P<italic>(?<![\w_])_(?=\S)[^_\n]+?(?<=\S)_(?![\w_]))"
    r"|(?P<strike>(?<![\w~])~(?=\S)[^~\n]+?(?<=\S)~(?![\w~]))"
)


def parse_inline(
    text: str, style: Style, users: Mapping[str, str], plain: bool = False
) -> list[Run]:
    """Styled runs of one mrkdwn paragraph; `plain` keeps only emoji (plain_text objects)."""
    runs: list[Run] = []
    pos = 0
    for m in _INLINE.finditer(text):
        kind, token = m.lastgroup or "", m.group()
        if plain and kind != "emoji":
            continue
        if kind == "emoji" and token[1:-1] not in EMOJI:
            continue
        runs.append(Run(text[pos : m.start()], style))
        pos = m.end()
        inner = token[1:-1]
        if kind == "code":
            runs.append(Run(inner, replace(style, code=True, color=CODE_RED)))
        elif kind == "angle":
            runs += _angle(inner, style, users)
        elif kind == "emoji":
            runs.append(Run(inner, style, emoji=True))
        else:
            runs += parse_inline(inner, _flagged(style, kind), users)
    runs.append(Run(text[pos:], style))
    # Slack shows the three entities the bot escapes (`ganops.bot.blocks.common.escape`) as characters.
    return [replace(r, text=_unescape(r.text)) for r in runs if r.text]


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _flagged(style: Style, kind: str) -> Style:
    if kind == "bold":
        return replace(style, bold=True)
    if kind == "italic":
        return replace(style, italic=True)
    return replace(style, strike=True)


def _angle(inner: str, style: Style, users: Mapping[str, str]) -> list[Run]:
    """<@U…> and <!here> as highlighted names, <#C…|name> as #name, links as their label."""
    target, _, label = inner.partition("|")
    link = replace(style, color=LINK)
    if target.startswith("@"):
        name = users.get(target[1:], label or target[1:])
        return [Run(f"@{name}", replace(link, mention=True))]
    if target.startswith("!"):
        return [Run(f"@{target[1:]}", replace(link, mention=True))]
    if target.startswith("#"):
        return [Run(f"#{label or target[1:]}", link)]
    return parse_inline(label, link, users) if label else [Run(target, link)]


# --- layout ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    x: int
    width: int
    run: Run


@dataclass
class TextBox:
    """Wrapped text: `lines` of placed runs, `height` pixels tall; `draw` paints it."""

    lines: list[list[Placed]]
    line_h: int
    fonts: FontBook
    pre: bool = False  # a ``` block: drawn on a grey box

    @property
    def height(self) -> int:
        return len(self.lines) * self.line_h + (16 if self.pre else 0)

    def draw(self, img: Image.Image, x: int, y: int, width: int) -> None:
        d = ImageDraw.Draw(img)
        if self.pre:
            box = (x, y, x + width - 1, y + self.height - 1)
            d.rounded_rectangle(box, 4, fill=(248, 248, 248), outline=BORDER)
            x, y = x + 8, y + 8
        for i, line in enumerate(self.lines):
            top = y + i * self.line_h
            _backgrounds(d, line, x, top, self.line_h, self.pre)
            for p in line:
                draw_run(img, d, p.run, (x + p.x, top), self.line_h, self.fonts)


def _backgrounds(
    d: ImageDraw.ImageDraw, line: list[Placed], x: int, top: int, h: int, pre: bool
) -> None:
    """One box behind each stretch of inline code or a mention on a line."""
    spans: list[list[int]] = []
    last: Style | None = None
    for p in line:
        boxed = (p.run.style.code and not pre) or p.run.style.mention
        if boxed and last is not None and last == p.run.style:
            spans[-1][1] = p.x + p.width
        elif boxed:
            spans.append([p.x, p.x + p.width, int(p.run.style.mention)])
        last = p.run.style if boxed else None
    for a, b, mention in spans:
        box = (x + a - 2, top + 2, x + b + 2, top + h - 3)
        if mention:
            d.rounded_rectangle(box, 3, fill=MENTION_BG)
        else:
            d.rounded_rectangle(box, 3, fill=CODE_BG, outline=(225, 225, 225))


def run_font(fonts: FontBook, style: Style) -> Font:
    return fonts.font(style.face, style.size - 2 if style.code else style.size)


def run_width(fonts: FontBook, run: Run) -> int:
    if run.emoji:
        return round(run.style.size * 1.25)
    pad = 4 if run.style.code or run.style.mention else 0
    return (
        round(
            ImageDraw.Draw(Image.new("1", (1, 1))).textlength(run.text, run_font(fonts, run.style))
        )
        + pad
    )


def draw_run(
    img: Image.Image,
    d: ImageDraw.ImageDraw,
    run: Run,
    at: tuple[int, int],
    line_h: int,
    fonts: FontBook,
) -> None:
    x, top = at
    size = run.style.size
    if run.emoji:
        s = round(size * 1.1)
        paint = EMOJI[run.text]
        paint(d, (x + 1, top + (line_h - s) // 2, x + 1 + s, top + (line_h - s) // 2 + s), fonts)
        return
    font = run_font(fonts, run.style)
    pad = 2 if run.style.code or run.style.mention else 0
    baseline = top + round(line_h * 0.5 + size * 0.36)
    draw_text(d, (x + pad, baseline), run.text, font, run.style.color)
    if run.style.bold and fonts.faux_bold(run.style.face):
        draw_text(d, (x + pad + 1, baseline), run.text, font, run.style.color)
    if run.style.strike:
        mid = baseline - round(size * 0.3)
        d.line((x, mid, x + run_width(fonts, run), mid), fill=run.style.color)


def layout(
    text: str,
    width: int,
    fonts: FontBook,
    style: Style | None = None,
    users: Mapping[str, str] | None = None,
    plain: bool = False,
) -> list[TextBox]:
    """Mrkdwn as wrapped boxes: paragraphs of inline runs, and ``` blocks on their own."""
    style = style or Style()
    line_h = round(style.size * 1.47)
    boxes: list[TextBox] = []
    parts = [text] if plain else re.split(r"```(.*?)```", text, flags=re.S)
    for i, part in enumerate(parts):
        if i % 2:  # inside ```
            mono = replace(style, code=True, size=style.size - 1)
            lines = [[Run(_unescape(t), mono)] if t else [] for t in part.strip("\n").split("\n")]
            placed = _wrap(lines, width - 16, fonts)
            boxes.append(TextBox(placed, round(mono.size * 1.35), fonts, pre=True))
        elif part.strip("\n"):
            paragraphs = part.strip("\n").split("\n")
            lines = [parse_inline(p, style, users or {}, plain) for p in paragraphs]
            boxes.append(TextBox(_wrap(lines, width, fonts), line_h, fonts))
    return boxes


def _wrap(paragraphs: list[list[Run]], width: int, fonts: FontBook) -> list[list[Placed]]:
    out: list[list[Placed]] = []
    for runs in paragraphs:
        line: list[Placed] = []
        x = 0
        for run in _tokens(runs):
            w = run_width(fonts, run)
            if x + w > width and line:
                out.append(line)
                line, x = [], 0
                if run.text.isspace():
                    continue
            for piece in _split_long(run, width, fonts) if w > width else [run]:
                pw = run_width(fonts, piece)
                if x + pw > width and line:
                    out.append(line)
                    line, x = [], 0
                line.append(Placed(x, pw, piece))
                x += pw
        out.append(line)
    return out


def _tokens(runs: list[Run]) -> list[Run]:
    """Words and spaces, so lines break between words."""
    if not runs:
        return []
    return [
        Run(tok, r.style, r.emoji)
        for r in runs
        for tok in (re.findall(r"\s+|\S+", r.text) if not r.emoji else [r.text])
    ]


def _split_long(run: Run, width: int, fonts: FontBook) -> list[Run]:
    pieces: list[Run] = []
    current = ""
    for ch in run.text:
        if current and run_width(fonts, Run(current + ch, run.style)) > width:
            pieces.append(Run(current, run.style))
            current = ""
        current += ch
    return [*pieces, Run(current, run.style)]
