"""The unit of layout shared by the renderer's modules: a height and a painter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image


@dataclass
class Piece:
    """Something laid out for a known width: its height, and how to paint it at (x, y)."""

    height: int
    paint: Callable[[Image.Image, int, int], None]


def column(parts: list[Piece], gap: int) -> Piece:
    height = sum(p.height for p in parts) + gap * max(0, len(parts) - 1)

    def paint(img: Image.Image, x: int, y: int) -> None:
        for p in parts:
            p.paint(img, x, y)
            y += p.height + gap

    return Piece(height, paint)


__all__ = ["Piece", "column"]
