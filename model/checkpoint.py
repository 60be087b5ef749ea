"""Training checkpoints: written atomically, read back with `weights_only=True`.

A checkpoint holds everything a resumed run needs to continue exactly where the last one
stopped: both configs, the step, every network's and optimizer's state, and the RNG states.
Its top-level "net" and "generator" keys are what `model.bundle.load_bundle` reads, so a
checkpoint file is also a servable model.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

FORMAT = 1
CHECKPOINT_NAME = "last.pt"


class CheckpointError(Exception):
    """A checkpoint is unreadable or belongs to a different network (one-line message)."""


def checkpoint_path(out_dir: Path) -> Path:
    return out_dir / "checkpoints" / CHECKPOINT_NAME


def rng_state(device: torch.device) -> dict[str, Any]:
    np_state = cast(tuple[Any, ...], np.random.get_state(legacy=True))
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        # numpy's state holds an ndarray, which weights_only loading refuses: store a list.
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` to `path` via a temporary file and `os.replace`, so a kill mid-write
    leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            torch.save({"format": FORMAT, **payload}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, corrupt, or not a ganops training checkpoint.
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except Exception as exc:  # torch raises many types for a damaged file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: unreadable checkpoint ({first})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "step" not in data:
        raise CheckpointError(f"{path}: not a ganops training checkpoint")
    return data


def to_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """The trainer's state in checkpoint form: "generator" holds what a bundle ships (the
    weight average, or G itself, stored once), so `load_bundle(checkpoint)` serves it."""
    nets = dict(state["nets"])
    # CycleGAN's image pools (images and RNG) and an fp16 loss scaler travel too, for an
    # exact resume.
    extra: dict[str, Any] = {k: state[k] for k in ("pools", "scaler") if k in state}
    if "ema" in state:
        ema = state["ema"]
        return {"generator": ema["model"], "ema_updates": ema["updates"], "nets": nets,
                "optims": state["optims"], **extra}  # fmt: skip
    return {"generator": nets.pop("G"), "nets": nets, "optims": state["optims"], **extra}


def from_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `to_checkpoint`."""
    extra: dict[str, Any] = {k: ckpt[k] for k in ("pools", "scaler") if k in ckpt}
    if "ema_updates" in ckpt:
        ema = {"model": ckpt["generator"], "updates": ckpt["ema_updates"]}
        return {"nets": ckpt["nets"], "optims": ckpt["optims"], "ema": ema, **extra}
    nets = {**ckpt["nets"], "G": ckpt["generator"]}
    return {"nets": nets, "optims": ckpt["optims"], **extra}
