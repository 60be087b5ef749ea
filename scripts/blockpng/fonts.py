"""Fonts and emoji for `blockpng.render`: DejaVu from the system or matplotlib's copy, else
Pillow's bundled default (a missing font never raises), and a few emoji drawn as small icons.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import ImageDraw, ImageFont

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
RGB = tuple[int, int, int]
_FILES = {
    "regular": "DejaVuSans.ttf",
    "bold": "DejaVuSans-Bold.ttf",
    "italic": "DejaVuSans-Oblique.ttf",
    "bolditalic": "DejaVuSans-BoldOblique.ttf",
    "mono": "DejaVuSansMono.ttf",
}


def default_font_dirs() -> list[Path]:
    """The system fonts, then matplotlib's bundled DejaVu (found without importing it)."""
    dirs = [Path("/usr/share/fonts")]
    spec = importlib.util.find_spec("matplotlib")
    for root in (spec.submodule_search_locations or []) if spec else []:
        dirs.append(Path(root) / "mpl-data" / "fonts" / "ttf")
    return dirs


class FontBook:
    """Fonts by (face, size), cached. A face with no file falls back to regular, then to
    Pillow's default; `faux_bold` then says to thicken bold text by drawing it twice."""

    def __init__(self, dirs: Sequence[Path] | None = None) -> None:
        self._paths: dict[str, Path] = {}
        for folder in default_font_dirs() if dirs is None else dirs:
            for face, name in _FILES.items():
                if face not in self._paths and folder.is_dir():
                    found = next(iter(sorted(folder.rglob(name))), None)
                    if found is not None:
                        self._paths[face] = found
        self._cache: dict[tuple[str, int], Font] = {}

    def faux_bold(self, face: str) -> bool:
        return "bold" in face and face not in self._paths

    def font(self, face: str, size: int) -> Font:
        key = (face, size)
        if key not in self._cache:
            self._cache[key] = self._load(face, size)
        return self._cache[key]

    def _load(self, face: str, size: int) -> Font:
        for candidate in (face, face.replace("italic", "") or "regular", "regular"):
            path = self._paths.get(candidate)
            if path is not None:
                try:
                    return ImageFont.truetype(str(path), size)
                except OSError:
                    continue
        try:
            return ImageFont.load_default(size=size)
        except (TypeError, ValueError, OSError):  # Pillow without FreeType: fixed-size bitmap
            return ImageFont.load_default()


def draw_text(
    d: ImageDraw.ImageDraw, baseline: tuple[int, int], s: str, font: Font, fill: RGB
) -> None:
    """Text by its left baseline; bitmap fonts have no anchors, so they go by their top."""
    if isinstance(font, ImageFont.FreeTypeFont):
        d.text(baseline, s, font=font, fill=fill, anchor="ls")
    else:
        d.text((baseline[0], baseline[1] - 10), s, font=font, fill=fill)


# --- emoji -------------------------------------------------------------------------------

Box = tuple[int, int, int, int]
Painter = Callable[[ImageDraw.ImageDraw, Box, FontBook], None]


def _glyph(bg: RGB | None, glyph: str, fg: RGB, circle: bool = False) -> Painter:
    def paint(d: ImageDraw.ImageDraw, b: Box, fonts: FontBook) -> None:
        if bg is not None and circle:
            d.ellipse(b, fill=bg)
        elif bg is not None:
            d.rounded_rectangle(b, 3, fill=bg)
        size = b[3] - b[1]
        font = fonts.font("bold", max(8, round(size * 0.8)))
        centre = ((b[0] + b[2]) // 2, (b[1] + b[3]) // 2)
        if isinstance(font, ImageFont.FreeTypeFont):
            d.text(centre, glyph, font=font, fill=fg, anchor="mm")
        else:
            d.text((centre[0] - 3, centre[1] - 6), glyph, font=font, fill=fg)

    return paint


def _no_entry(d: ImageDraw.ImageDraw, b: Box, fonts: FontBook) -> None:
    d.ellipse(b, fill=(221, 46, 68))
    h = (b[3] - b[1]) // 6
    mid = (b[1] + b[3]) // 2
    d.rectangle((b[0] + 3, mid - h, b[2] - 3, mid + h), fill=(255, 255, 255))


def _siren(d: ImageDraw.ImageDraw, b: Box, fonts: FontBook) -> None:
    w, h = b[2] - b[0], b[3] - b[1]
    d.pieslice((b[0] + 2, b[1] + 1, b[2] - 2, b[3] + h // 2), 180, 360, fill=(221, 46, 68))
    d.rectangle((b[0] + 1, b[3] - h // 4, b[2] - 1, b[3]), fill=(102, 117, 127))
    d.ellipse(
        (b[0] + w // 2 - 2, b[1] + h // 3, b[0] + w // 2 + 2, b[1] + h // 3 + 6),
        fill=(255, 220, 93),
    )


def _hourglass(d: ImageDraw.ImageDraw, b: Box, fonts: FontBook) -> None:
    cx = (b[0] + b[2]) // 2
    mid = (b[1] + b[3]) // 2
    frame = (153, 170, 181)
    d.polygon(
        [(b[0] + 3, b[1] + 2), (b[2] - 3, b[1] + 2), (cx, mid)], fill=(255, 172, 51), outline=frame
    )
    d.polygon(
        [(cx, mid), (b[2] - 3, b[3] - 2), (b[0] + 3, b[3] - 2)], fill=(255, 204, 77), outline=frame
    )
    d.line((b[0] + 1, b[1] + 1, b[2] - 1, b[1] + 1), fill=(102, 117, 127), width=2)
    d.line((b[0] + 1, b[3] - 1, b[2] - 1, b[3] - 1), fill=(102, 117, 127), width=2)


def _stop(d: ImageDraw.ImageDraw, b: Box, fonts: FontBook) -> None:
    d.rounded_rectangle(b, 3, fill=(59, 136, 195))
    q = (b[2] - b[0]) // 4
    d.rectangle((b[0] + q, b[1] + q, b[2] - q, b[3] - q), fill=(255, 255, 255))


EMOJI: dict[str, Painter] = {
    "white_check_mark": _glyph((119, 178, 85), "✓", (255, 255, 255)),
    "heavy_check_mark": _glyph(None, "✓", (41, 47, 51)),
    "x": _glyph(None, "✗", (221, 46, 68)),
    "warning": _glyph(None, "⚠", (230, 160, 0)),
    "rotating_light": _siren,
    "no_entry": _no_entry,
    "hourglass_flowing_sand": _hourglass,
    "arrows_counterclockwise": _glyph((59, 136, 195), "↻", (255, 255, 255)),
    "black_square_for_stop": _stop,
    "rocket": _glyph((85, 172, 238), "↑", (255, 255, 255), circle=True),
    "zzz": _glyph(None, "z", (85, 172, 238)),
    "no_bell": _glyph((255, 204, 77), "⊘", (221, 46, 68), circle=True),
    "grey_question": _glyph(None, "?", (153, 170, 181)),
    "chart_with_upwards_trend": _glyph((255, 255, 255), "↗", (221, 46, 68)),
    "rewind": _glyph((59, 136, 195), "«", (255, 255, 255)),
    "fast_forward": _glyph((59, 136, 195), "»", (255, 255, 255)),
    "hatching_chick": _glyph((255, 204, 77), "◔", (244, 144, 12), circle=True),
    "package": _glyph((193, 105, 79), "▣", (255, 231, 186)),
    "hourglass": _hourglass,
}
