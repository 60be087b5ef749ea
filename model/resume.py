"""What a resumed run takes from its checkpoint: the file itself, once per node, and the recipe.

A retried pod may land on another GPU type, where the auto batch (model/batch_fit.py) would
pick another batch size, hence another lr and, for a run given in epochs, another number of
steps. Changing those mid-run silently trains a different recipe than the one the first
steps followed, so a resume takes batch size, lr, schedule and total steps from the
checkpoint and measures nothing. The network config must match as before (`model.train`).

Fetching: on one node every rank shares the output folder. Rank 0 downloads the durable copy
while the others wait at a barrier; a rank on another node (its own folder) that still finds
nothing downloads for itself (`storage.download` stages each process's copy apart).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ganops.model import distributed, storage
from ganops.model.config import TrainConfig
from ganops.model.distributed import DistInfo

# The TrainConfig fields that make the optimisation recipe (besides the total steps).
RECIPE_FIELDS = ("batch_size", "lr", "lr_decay_start", "beta1", "beta2", "epochs", "scale_lr")


def fetch(local: Path, durable_url: str | None, dist: DistInfo) -> bool:
    """Make the checkpoint present at `local` on every rank; True when there is one.

    Every rank of the run must call it (it holds a barrier).
    """
    if dist.is_main and durable_url and not local.is_file():
        storage.download(durable_url, local)
    distributed.barrier()
    if durable_url and not local.is_file():
        storage.download(durable_url, local)
    return local.is_file()


def restore_recipe(cfg: TrainConfig, ckpt: dict[str, Any]) -> tuple[TrainConfig, str | None]:
    """`cfg` with the checkpoint's batch size, lr, schedule and total steps, and no auto batch;
    and a line saying what that kept, when it differs from what `cfg` alone would have run.

    A checkpoint without a recipe (written before it was recorded) leaves `cfg` as it is.
    """
    saved = ckpt.get("train")
    if not isinstance(saved, dict):
        return cfg, None
    changes: dict[str, Any] = {k: saved[k] for k in RECIPE_FIELDS if k in saved}
    total = ckpt.get("total_steps", saved.get("steps"))
    changes["steps"] = None if total is None else int(total)
    restored = dataclasses.replace(cfg, **changes, auto_batch=False)
    if cfg.auto_batch:
        return restored, (
            f"resuming with the checkpoint's recipe (batch {restored.batch_size}, "
            f"lr {restored.lr:.3g}, {restored.steps} steps); the batch is not measured again"
        )
    differs = [
        f"{k} {getattr(cfg, k)} -> {getattr(restored, k)}"
        for k in ("batch_size", "lr", "epochs", "lr_decay_start")
        if getattr(cfg, k) != getattr(restored, k)
    ]
    if cfg.steps is not None and cfg.steps != restored.steps:
        differs.append(f"steps {cfg.steps} -> {restored.steps}")
    if not differs:
        return restored, None
    return restored, "resuming with the checkpoint's recipe: " + ", ".join(differs)


def recipe_differs(cfg: TrainConfig, total_steps: int, ckpt: dict[str, Any]) -> bool:
    """Whether `cfg`, running `total_steps`, trains another recipe than the checkpoint's."""
    saved = ckpt.get("train")
    if not isinstance(saved, dict):
        return False
    keys = ("batch_size", "lr", "lr_decay_start", "beta1", "beta2")
    if any(k in saved and saved[k] != getattr(cfg, k) for k in keys):
        return True
    return "total_steps" in ckpt and int(ckpt["total_steps"]) != total_steps


__all__ = ["RECIPE_FIELDS", "fetch", "recipe_differs", "restore_recipe"]
