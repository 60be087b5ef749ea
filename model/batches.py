"""The training data on the device, and the order the loop reads it in.

Both domains are decoded once into uint8 tensors on the training device (4x smaller than
float, converted per batch), so a step never waits for a loader. The order and the
augmentation (random crop from `load_scale` times the size, random flip, as in the papers,
on the device) are pure functions of the step and rank,
which makes a resumed run read exactly what an uninterrupted one would. Above the device
budget the images are read per batch from a decoded cache on disk instead
(model/data_cache.py), with the same indices and draws, so the batches are the same.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from ganops.model.config import TrainConfig
from ganops.model.data import list_images, load_image


class TrainError(Exception):
    """Training cannot start: bad data, a config the data cannot feed, a foreign checkpoint."""


# Decoding threads: PIL releases the GIL while it decodes and resizes, so threads scale with
# the cores without a process pool's pickling of every image back to the parent.
MAX_DECODE_WORKERS = 16


def _load_uint8(path: Path, image_size: int) -> torch.Tensor:
    return ((load_image(path, image_size) + 1.0) * 127.5).round().to(torch.uint8)


def load_domain(folder: Path, image_size: int, workers: int | None = None) -> torch.Tensor:
    """Every image of `folder` as uint8 NCHW (4x smaller than float; converted per batch),
    decoded by `workers` threads (default: one per core, at most MAX_DECODE_WORKERS) in the
    folder's order, so the tensor is the same whatever the count."""
    paths = list_images(folder)
    if not paths:
        raise TrainError(f"no images in {folder}")
    count = workers or min(MAX_DECODE_WORKERS, os.cpu_count() or 1)
    try:
        if count <= 1:
            images = [_load_uint8(p, image_size) for p in paths]
        else:
            with ThreadPoolExecutor(max_workers=count, thread_name_prefix="decode") as pool:
                images = list(pool.map(lambda p: _load_uint8(p, image_size), paths))
    except OSError as exc:
        raise TrainError(f"cannot read {folder}: {exc} (run `ganops validate`)") from None
    # Each image is uint8 already: the peak is the images once, not a float copy of them all.
    return torch.stack(images)


def _to_float(batch: torch.Tensor) -> torch.Tensor:
    return batch.float().div_(127.5).sub_(1.0)


def load_size(image_size: int, load_scale: float) -> int:
    """The size images are stored at before the random crop (286 for 256 at 1.12, as the
    papers' --load_size); even, and never below the crop."""
    return max(image_size, 2 * round(image_size * load_scale / 2))


def augment(
    batch: torch.Tensor, *, size: int, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """A random `size` crop of each image and, with `flip`, a random horizontal flip.

    The offsets and coins come from `generator` (CPU, seeded per step and rank); the crops and
    flips run where `batch` lives. A batch at `size` without `flip` is returned as it is.
    """
    n, extra = len(batch), batch.shape[-1] - size
    if extra == 0 and not flip:
        return batch
    tops = torch.randint(extra + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(extra + 1, (n,), generator=generator).tolist()
    flips = (torch.rand(n, generator=generator) < 0.5).tolist() if flip else [False] * n
    out = []
    for image, top, left, mirror in zip(batch, tops, lefts, flips, strict=True):
        image = image[..., top : top + size, left : left + size]  # torchvision's crop
        out.append(image.flip(-1) if mirror else image)  # and its horizontal_flip
    return torch.stack(out)


def _on(device: torch.device, index: torch.Tensor) -> torch.Tensor:
    """`index` (a CPU tensor) on `device` without stalling the host: a plain copy from pageable
    memory waits for the GPU's queue to drain, a pinned non-blocking one is queued behind it."""
    if device.type != "cuda":
        return index
    return index.pin_memory().to(device, non_blocking=True)


# A domain's images: a uint8 tensor on the device, or a uint8 memmap of the decoded cache on
# disk (model/data_cache.py) read one batch at a time.
Images = torch.Tensor | np.ndarray


def _take(images: Images, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`images[index]` on `device`. From a memmap only those rows are read (in `index`'s
    order, so the batch is the in-memory path's), then copied pinned and non-blocking."""
    if isinstance(images, torch.Tensor):
        return images[_on(images.device, index)]
    batch = torch.from_numpy(np.ascontiguousarray(images[index.numpy()]))
    if device.type != "cuda":
        return batch
    return batch.pin_memory().to(device, non_blocking=True)


class Batches:
    """The batch order: A through DistributedSampler (reshuffled per epoch, sharded per rank),
    B drawn at random from a generator seeded by (seed, step, rank). Both depend only on the
    step, so a resumed run sees exactly the batches an uninterrupted run would, whether the
    images are held on the device or streamed from the decoded cache (`device` says where a
    streamed batch goes; a tensor's batches stay where the tensor is)."""

    def __init__(
        self,
        a: Images,
        b: Images,
        cfg: TrainConfig,
        rank: int,
        world: int,
        device: torch.device | None = None,
    ):
        self.a, self.b, self.cfg, self.rank, self.world = a, b, cfg, rank, world
        self.device = device or (a.device if isinstance(a, torch.Tensor) else torch.device("cpu"))
        # The sampler only needs len(); the images stay where they are (device or cache).
        self.sampler: DistributedSampler[int] = DistributedSampler(
            range(len(a)),  # type: ignore[arg-type]
            num_replicas=world,
            rank=rank,
            shuffle=True,
            seed=cfg.seed,
        )
        self.per_epoch = len(self.sampler) // cfg.batch_size
        if self.per_epoch < 1:
            raise TrainError(
                f"{len(a)} training images cannot fill one batch of {cfg.batch_size} "
                f"per process ({world} processes); lower --batch-size"
            )
        self._epoch, self._order = -1, list[int]()
        self._index = torch.empty(0, dtype=torch.long)  # this epoch's order, on the CPU

    def total_steps(self) -> int:
        return self.cfg.steps if self.cfg.steps is not None else self.cfg.epochs * self.per_epoch

    def get(self, step: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch, self._order = epoch, list(self.sampler)
            self._index = torch.tensor(self._order)
        bs, cfg = self.cfg.batch_size, self.cfg
        idx_a = self._index[pos * bs : (pos + 1) * bs]
        rng = torch.Generator().manual_seed((cfg.seed << 32) + step * self.world + self.rank)
        idx_b = torch.randint(len(self.b), (bs,), generator=rng)
        size = cfg.net.image_size
        a, b = _take(self.a, idx_a, self.device), _take(self.b, idx_b, self.device)
        if not cfg.crop_during_decay and step >= cfg.lr_decay_start * self.total_steps():
            # Upstream CUT's decay epochs: the whole image at the training size, flips only
            # (the same boundary as `GanTrainer.set_lr_for_step`).
            a, b = _resize(a, size), _resize(b, size)
        a = augment(a, size=size, flip=cfg.flip, generator=rng)
        b = augment(b, size=size, flip=cfg.flip, generator=rng)
        return epoch, _to_float(a), _to_float(b)


def _resize(batch: torch.Tensor, size: int) -> torch.Tensor:
    """`batch` scaled to `size` (bicubic with antialiasing, as upstream's PIL resize)."""
    if batch.shape[-1] == size:
        return batch
    # Here, not at the top: torchvision's import pulls in torch._dynamo (1.6 s), which every
    # process that reads batches would pay for this one call (the decay phase's resize).
    from torchvision.transforms.v2 import functional as tvf

    return tvf.resize(batch, [size, size], interpolation=tvf.InterpolationMode.BICUBIC,
                      antialias=True)  # fmt: skip
