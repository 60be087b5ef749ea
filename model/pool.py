"""CycleGAN's image pool: the discriminators see a history of generated images.

Shrivastava et al. (2017), used by CycleGAN with 50 images: each new fake either goes to the
discriminator as it is, or (once the pool is full, with probability 1/2) is swapped for a
random older one, which stays in the pool in its place. It damps the oscillation where D
only ever judges G's latest trick. The pool draws from its own seeded generator, and its
images and RNG state are part of the checkpoint, so a resumed run makes the same choices.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class ImagePool:
    """A pool of at most `size` generated images on the training device (0: no pool)."""

    def __init__(self, size: int, *, seed: int) -> None:
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[Tensor] = []
        self.rng = torch.Generator().manual_seed(seed)

    def query(self, fakes: Tensor) -> Tensor:
        """The batch D should judge in place of `fakes` (detached, same shape)."""
        fakes = fakes.detach()
        if self.size == 0:
            return fakes
        # One draw per image, on the CPU: two small tensors, not a host sync per image.
        coins = torch.rand(len(fakes), generator=self.rng).tolist()
        slots = torch.randint(self.size, (len(fakes),), generator=self.rng).tolist()
        out = []
        for fake, coin, slot in zip(fakes, coins, slots, strict=True):
            if len(self.images) < self.size:
                self.images.append(fake.clone())
                out.append(fake)
            elif coin < 0.5:
                out.append(self.images[slot].clone())
                self.images[slot] = fake.clone()
            else:
                out.append(fake)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        stacked = torch.stack(self.images).cpu() if self.images else None
        return {"images": stacked, "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        images = state.get("images")
        self.images = [] if images is None else list(images.to(device).unbind(0))
        self.rng.set_state(state["rng"])


__all__ = ["ImagePool"]
