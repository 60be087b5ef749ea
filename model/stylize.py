"""Apply a generator to a folder of images: n images in, n images out, the same names.

Each image is translated at its own size (the generator is fully convolutional); sides that
are not a multiple of 4 are reflection-padded for the two down/upsamplings and cropped back.
Every input is decoded before anything is written, so a bad file fails the whole call early.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ganops.model.data import list_images, load_image, tensor_to_pil

MIN_SIDE = 8


class StylizeError(Exception):
    """The input folder is missing or empty, or holds an unreadable or too-small image."""


def _check_inputs(in_dir: Path) -> list[Path]:
    if not in_dir.is_dir():
        raise StylizeError(f"{in_dir}: no such folder")
    paths = list_images(in_dir)
    if not paths:
        raise StylizeError(f"{in_dir}: no images (png, jpg, bmp, webp, tif, ppm)")
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
                size = image.size
        except Exception as exc:  # any decoder failure is a property of the file
            raise StylizeError(f"{path.name}: unreadable image ({type(exc).__name__})") from None
        if min(size) < MIN_SIDE:
            raise StylizeError(f"{path.name}: {size[0]}x{size[1]} px is too small")
    return paths


@torch.inference_mode()
def stylize_image(generator: nn.Module, image: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Translate one CHW image in [-1, 1] at its own size; returns CHW on the CPU."""
    _, h, w = image.shape
    pad_h, pad_w = -h % 4, -w % 4
    x = image[None].to(device)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    y = generator(x).float().clamp(-1.0, 1.0)
    return y[0, :, :h, :w].cpu()


def stylize_folder(
    generator: nn.Module, in_dir: Path, out_dir: Path, device: torch.device
) -> list[Path]:
    """Write G(image) for every image of `in_dir` to `out_dir` under the same name.

    Raises:
        StylizeError: the folder is missing or empty, or an image is unreadable or tiny.
    """
    paths = _check_inputs(Path(in_dir))
    out = Path(out_dir)
    if out.resolve() == Path(in_dir).resolve():
        raise StylizeError("OUT_DIR must differ from IN_DIR (the inputs would be overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    generator.eval()
    written = []
    for path in paths:
        result = stylize_image(generator, load_image(path, None), device)
        target = out / path.name
        tensor_to_pil(result).save(target)
        written.append(target)
    return written
