"""The batch that fills one GPU, and the learning rate that goes with it.

The papers train at batch 1, which leaves a modern GPU mostly idle: on one H200, CUT's full
preset ran at 19.5 img/s at batch 1, 90.8 at batch 8 and 112 at batch 32. So when a run on
CUDA names no batch size (`TrainConfig.auto_batch`), the full preset measures one step's
memory at batch 1 and 2, and takes the largest power of two up to `MAX_AUTO_BATCH` whose
projected peak fits in `MEMORY_SHARE` of the GPU. Past 32 the throughput gain measured small
while the number of optimiser steps per epoch keeps falling, hence the cap.

The learning rate rule, stated: Adam's square-root scaling (Malladi et al. 2022, "On the SDEs
and Scaling Rules for Adaptive Gradient Algorithms"): lr = lr_1 * sqrt(batch / batch_1), from
the preset's (lr_1, batch_1) = (2e-4, 1). It applies only when the lr was not given; an
explicit lr is kept as it is. Instance norm is per image, so the batch changes nothing else.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from ganops.model.config import TrainConfig
from ganops.model.trainers import StepOptions, make_trainer

MAX_AUTO_BATCH = 32
MEMORY_SHARE = 0.8


def scaled_lr(base_lr: float, *, base_batch: int, batch: int) -> float:
    """The square-root rule: the lr for `batch`, given the one tuned at `base_batch`."""
    return base_lr * math.sqrt(batch / base_batch)


def pick_batch(*, at_one: int, at_two: int, budget: int, cap: int = MAX_AUTO_BATCH) -> int:
    """The largest power of two <= `cap` whose projected peak memory fits in `budget` bytes,
    from the measured peaks of one step at batch 1 and at batch 2 (memory grows linearly in
    the batch: activations per image on top of weights and optimiser state). At least 1."""
    per_image = max(at_two - at_one, 1)
    fixed = at_one - per_image
    batch = 1
    while batch * 2 <= cap and fixed + per_image * batch * 2 <= budget:
        batch *= 2
    return batch


def fit_batch(
    cfg: TrainConfig,
    *,
    peak_bytes: Callable[[int], int],
    total_bytes: int,
    images: int,
    agree: Callable[[int], int] = lambda batch: batch,
) -> tuple[TrainConfig, str]:
    """`cfg` with the batch that fills the device, and the lr for it (see the module's rule);
    `images` (training images per process) caps the batch so that an epoch has a step, and
    `agree` turns this process's pick into the one every process uses (`min_over_ranks`).

    Returns the new config and a line saying what was picked and why.
    """
    at_one, at_two = peak_bytes(1), peak_bytes(2)
    budget = int(total_bytes * MEMORY_SHARE)
    fits = pick_batch(at_one=at_one, at_two=at_two, budget=budget, cap=min(MAX_AUTO_BATCH, images))
    batch = agree(fits)
    lr = scaled_lr(cfg.lr, base_batch=cfg.batch_size, batch=batch) if cfg.scale_lr else cfg.lr
    gib = 2**30
    note = (
        f"batch {batch} fills this GPU (one step at batch 1 peaks at {at_one / gib:.1f} GiB, "
        f"+{max(at_two - at_one, 0) / gib:.2f} GiB per image, {total_bytes / gib:.0f} GiB in "
        f"all{'' if batch == fits else f'; {fits} here, the smallest rank fits {batch}'}); "
        f"lr {cfg.lr:g} -> {lr:.3g}"
        + (" by the square-root rule" if cfg.scale_lr else " (given, kept)")
    )
    return dataclasses.replace(cfg, batch_size=batch, lr=lr, auto_batch=False), note


def cuda_peak_bytes(cfg: TrainConfig, opts: StepOptions) -> Callable[[int], int]:
    """The measured peak memory of one training step at a given batch, with the run's step
    options but eager (compiling for a probe would cost more than the step)."""
    device = opts.device
    opts = dataclasses.replace(opts, compile=False)

    def measure(batch: int) -> int:
        probe = dataclasses.replace(cfg, batch_size=batch)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        size = cfg.net.image_size
        try:
            trainer = make_trainer(probe, opts)
            x = torch.rand(batch, cfg.net.input_nc, size, size, device=device) * 2 - 1
            for _ in range(2):  # the second step has the optimiser state too
                trainer.train_step(x, x)
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device)
        except torch.cuda.OutOfMemoryError:
            # Does not fit at all: report more than the device has, so the pick stays at 1.
            peak = 2 * torch.cuda.get_device_properties(device).total_memory
        finally:
            torch.cuda.empty_cache()
        return int(peak)

    return measure


def min_over_ranks(device: torch.device) -> Callable[[int], int]:
    """Under DDP, the smallest batch any rank picked; a single process keeps its own."""
    import torch.distributed as dist

    def agree(batch: int) -> int:
        if not (dist.is_available() and dist.is_initialized()):
            return batch
        mine = torch.tensor([batch], device=device)
        dist.all_reduce(mine, op=dist.ReduceOp.MIN)
        return int(mine.item())

    return agree


__all__ = ["MAX_AUTO_BATCH", "MEMORY_SHARE", "cuda_peak_bytes", "fit_batch", "min_over_ranks",
           "pick_batch", "scaled_lr"]  # fmt: skip
