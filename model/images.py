"""Image helpers for reports: labelled sample grids from [-1, 1] tensors."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from ganops.model.data import tensor_to_pil

LABEL_WIDTH = 96
PAD = 2
BACKGROUND = (255, 255, 255)


def cell_size(image_size: int) -> int:
    """Grid cells: tiny images are enlarged (nearest) to stay readable in chat, big ones cut."""
    return max(96, min(image_size, 128))


def make_grid(rows: Sequence[tuple[str, torch.Tensor]], cell: int | None = None) -> Image.Image:
    """One labelled row per (label, NCHW tensor); columns line up across rows.

    Raises:
        ValueError: no rows, or rows of different lengths.
    """
    if not rows:
        raise ValueError("make_grid needs at least one row")
    columns = len(rows[0][1])
    if any(len(t) != columns for _, t in rows):
        raise ValueError("every grid row needs the same number of images")
    cell = cell or cell_size(int(rows[0][1].shape[-1]))
    width = LABEL_WIDTH + columns * (cell + PAD) + PAD
    height = len(rows) * (cell + PAD) + PAD
    grid = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for r, (label, images) in enumerate(rows):
        top = PAD + r * (cell + PAD)
        draw.text((6, top + cell // 2 - 6), label, fill=(0, 0, 0), font=font)
        for c, image in enumerate(images):
            resample = (
                Image.Resampling.NEAREST if image.shape[-1] < cell else Image.Resampling.BICUBIC
            )
            tile = tensor_to_pil(image).resize((cell, cell), resample)
            grid.paste(tile, (LABEL_WIDTH + PAD + c * (cell + PAD), top))
    return grid
