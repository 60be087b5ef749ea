"""Data: the CycleGAN folder layout, image loading, the data set digest.

Layout: `trainA/ trainB/ testA/ testB/`, and optionally `testB_gt/` holding the true translation
of each `testA/` image under the same file name (the synthetic set has it; real sets rarely do).
Images are tensors in [-1, 1], CHW. The synthetic generator and the validator live in
`model.synthetic` and `model.validation`; their public names are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ganops.model.digest import dataset_digest
from ganops.model.synthetic import DriftKnobs, apply_knobs, make_synthetic
from ganops.model.validation import IMAGE_EXTENSIONS, ValidationReport, validate_dataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "DriftKnobs",
    "TestSet",
    "UnpairedImageDataset",
    "ValidationReport",
    "apply_knobs",
    "dataset_digest",
    "list_images",
    "load_folder",
    "load_image",
    "load_test_set",
    "make_synthetic",
    "pil_to_tensor",
    "tensor_to_pil",
    "validate_dataset",
]


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in `folder` (by extension, hidden files skipped), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not is_hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def pil_to_tensor(image: Image.Image, image_size: int | None = None) -> torch.Tensor:
    """PIL image -> float CHW tensor in [-1, 1], converted to RGB and resized (bicubic)."""
    rgb = image.convert("RGB")
    if image_size is not None and rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.Resampling.BICUBIC)
    array = np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """CHW tensor in [-1, 1] -> RGB PIL image (values outside the range are clipped)."""
    array = (tensor.detach().float().cpu().clamp(-1.0, 1.0) + 1.0) * 127.5
    return Image.fromarray(array.round().byte().permute(1, 2, 0).numpy(), "RGB")


def load_image(path: str | Path, image_size: int | None) -> torch.Tensor:
    """Read an image file as a CHW tensor in [-1, 1] at `image_size` (None: native size)."""
    with Image.open(path) as image:
        return pil_to_tensor(image, image_size)


def load_folder(
    folder: str | Path, image_size: int, limit: int | None = None
) -> tuple[list[str], torch.Tensor]:
    """The first `limit` images of `folder` by name, as (names, NCHW tensor)."""
    paths = list_images(folder)[:limit]
    if not paths:
        return [], torch.empty(0, 3, image_size, image_size)
    return [p.name for p in paths], torch.stack([load_image(p, image_size) for p in paths])


@dataclass(frozen=True)
class TestSet:
    """The test split: inputs `a` (testA), real targets `b` (testB), and, when the set has
    `testB_gt/`, `gt[i]` = the true translation of `a[i]`."""

    names: list[str]
    a: torch.Tensor
    b: torch.Tensor
    gt: torch.Tensor | None


def load_test_set(root: str | Path, image_size: int, limit: int | None = None) -> TestSet:
    """Load testA (first `limit` by name), testB, and testB_gt when it covers every input."""
    root = Path(root)
    names, a = load_folder(root / "testA", image_size, limit)
    _, b = load_folder(root / "testB", image_size, limit)
    gt_dir = root / "testB_gt"
    gt = None
    if names and all((gt_dir / n).is_file() for n in names):
        gt = torch.stack([load_image(gt_dir / n, image_size) for n in names])
    return TestSet(names=names, a=a, b=b, gt=gt)


class UnpairedImageDataset(Dataset[dict[str, Any]]):
    """Unaligned pairs from `<root>/<split>A` and `<root>/<split>B`, as CycleGAN reads them.

    Item i is A[i] with a random B image (drawn from torch's global RNG, so a seeded run is
    reproducible). Decoded images are cached, since the sets are small and decoding dominates.
    """

    def __init__(
        self, root: str | Path, split: str = "train", image_size: int = 32, flip: bool = False
    ) -> None:
        self.root = Path(root)
        self.image_size = image_size
        self.flip = flip
        self.paths_a = list_images(self.root / f"{split}A")
        self.paths_b = list_images(self.root / f"{split}B")
        if not self.paths_a or not self.paths_b:
            raise ValueError(f"no images in {self.root}/{split}A or {self.root}/{split}B")
        self._cache: dict[Path, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.paths_a)

    def _get(self, path: Path) -> torch.Tensor:
        if path not in self._cache:
            self._cache[path] = load_image(path, self.image_size)
        image = self._cache[path]
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image

    def __getitem__(self, index: int) -> dict[str, Any]:
        path_a = self.paths_a[index % len(self.paths_a)]
        path_b = self.paths_b[int(torch.randint(len(self.paths_b), ()))]
        return {
            "A": self._get(path_a),
            "B": self._get(path_b),
            "A_path": str(path_a),
            "B_path": str(path_b),
        }
