"""The training data on the device, and the order the loop reads it in.

Both domains are decoded once into uint8 tensors on the training device (4x smaller than
float, converted per batch), so a step never waits for a loader. The order is a pure function
of the step, which makes a resumed run read exactly what an uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DistributedSampler

from model.config import TrainConfig
from model.data import list_images, load_image


class TrainError(Exception):
    """Training cannot start: bad data, a config the data cannot feed, a foreign checkpoint."""


def load_domain(folder: Path, image_size: int) -> torch.Tensor:
    """Every image of `folder` as uint8 NCHW (4x smaller than float; converted per batch)."""
    paths = list_images(folder)
    if not paths:
        raise TrainError(f"no images in {folder}")
    try:
        images = [load_image(p, image_size) for p in paths]
    except OSError as exc:
        raise TrainError(f"cannot read {folder}: {exc} (run `ganops validate`)") from None
    return ((torch.stack(images) + 1.0) * 127.5).round().to(torch.uint8)


def _to_float(batch: torch.Tensor) -> torch.Tensor:
    return batch.float().div_(127.5).sub_(1.0)


class Batches:
    """The batch order: A through DistributedSampler (reshuffled per epoch, sharded per rank),
    B drawn at random from a generator seeded by (seed, step, rank). Both depend only on the
    step, so a resumed run sees exactly the batches an uninterrupted run would."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, cfg: TrainConfig, rank: int, world: int):
        self.a, self.b, self.cfg, self.rank, self.world = a, b, cfg, rank, world
        # The sampler only needs len(); the images stay in one tensor on the device.
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

    def total_steps(self) -> int:
        return self.cfg.steps if self.cfg.steps is not None else self.cfg.epochs * self.per_epoch

    def get(self, step: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch, self._order = epoch, list(self.sampler)
        bs = self.cfg.batch_size
        idx_a = torch.tensor(self._order[pos * bs : (pos + 1) * bs])
        rng = torch.Generator().manual_seed((self.cfg.seed << 32) + step * self.world + self.rank)
        idx_b = torch.randint(len(self.b), (bs,), generator=rng)
        return epoch, _to_float(self.a[idx_a]), _to_float(self.b[idx_b])
