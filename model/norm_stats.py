"""Batch-norm statistics measured on the weights that ship.

In training, batch norm normalises by each batch's own statistics. Its running averages,
which eval mode uses, trail the live weights by ~10 steps (momentum 0.1, a few noisy batches),
and the weight average that ships (`model.trainers.Ema`) copies them from G: statistics of
other weights. On the tiny preset (batch norm, batch 4) that shifts each output's overall tone
(bench/learning.py, CUT, seed 0: SSIM 0.566 -> 0.676 once they are measured anew; seeds 1 and
2: 0.565 -> 0.664, 0.533 -> 0.633).

So the end of a run measures them afresh, as SWA does for its averaged weights
(`torch.optim.swa_utils.update_bn`): the shipped weights, in train mode, on the inputs G saw in
the run's last `BATCHES` steps, each batch counted once. The inputs are what G normalised in
training (`GanTrainer.norm_inputs`): CUT runs G on A and B together, so A alone would be the
wrong statistics (0.566 -> 0.499). 10 batches already give the same SSIM to ±0.003.

Instance norm (the full preset) keeps no running statistics: there is nothing to measure.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

BATCHES = 50


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


@torch.no_grad()
def measure(generator: nn.Module, inputs: Iterable[Tensor]) -> bool:
    """Replace `generator`'s batch-norm running statistics by their equal-weight average over
    `inputs` (train-mode forwards, no gradients). Returns False, touching nothing, when it has
    no batch norm or there are no inputs (update_bn would leave the reset statistics)."""
    if not has_batch_norm(generator):
        return False
    batches = iter(inputs)
    first = next(batches, None)
    if first is None:
        return False
    update_bn(itertools.chain([first], batches), generator)
    return True


__all__ = ["BATCHES", "has_batch_norm", "measure"]
