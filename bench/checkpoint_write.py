"""Checkpoint write time on the training loop: how long the loop stalls per checkpoint.

"sync" is what the loop did before: build the payload and `save_checkpoint` it (torch.save
with fsync) on the training thread. "async" is what it does now: `TrainSession.checkpoint`
takes a CPU copy and hands it to the writer thread (`flush_s` is that thread's write, which
training no longer waits for; the async case also uploads to a durable local "bucket").
CUT at the tiny preset and at the full preset (128 px by default on the CPU), median of
`--repeats` checkpoints after a couple of steps (so Adam's moments exist).

Prints one JSON object. Usage: bench/checkpoint_write.py [--full-size N] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganops.model.checkpoint import rng_state, save_checkpoint, to_checkpoint
from ganops.model.config import train_config
from ganops.model.data import make_synthetic
from ganops.model.tracking import NullTracker
from ganops.model.train import TrainSession


def _session(preset: str, size: int, root: Path) -> TrainSession:
    cfg = train_config(model="cut", preset_name=preset, image_size=size, batch_size=1, steps=2)
    data = make_synthetic(root / f"data-{preset}", n_train=4, n_test=2, image_size=size)
    out = root / f"out-{preset}"
    durable = str(root / "bucket" / preset / "last.pt")
    cpu = torch.device("cpu")
    session = TrainSession(cfg, data, cpu, NullTracker(), out, durable_url=durable)
    session.run(resume=False)  # two steps: optimizer state exists, the writer is closed
    return session


def _sync(session: TrainSession, path: Path) -> float:
    began = time.perf_counter()
    save_checkpoint(path, {"step": 2, **to_checkpoint(session.trainer.state_dict()),
                           "rng": rng_state(session.device), "history": session.history})  # fmt: skip
    return time.perf_counter() - began


def _async(session: TrainSession) -> tuple[float, float]:
    began = time.perf_counter()
    session.checkpoint(2)
    stall = time.perf_counter() - began
    session.writer.flush()
    return stall, time.perf_counter() - began


def measure(preset: str, size: int, repeats: int, root: Path) -> dict[str, Any]:
    from ganops.model.checkpoint_writer import CheckpointWriter

    session = _session(preset, size, root)
    sync = [_sync(session, root / f"sync-{preset}.pt") for _ in range(repeats)]
    session.writer = CheckpointWriter(session.ckpt_path, session.durable_url)
    results = [_async(session) for _ in range(repeats)]
    session.writer.close()
    return {
        "preset": preset,
        "image_size": size,
        "checkpoint_mb": round(session.ckpt_path.stat().st_size / 2**20, 1),
        "sync_stall_s": round(statistics.median(sync), 4),
        "async_stall_s": round(statistics.median(r[0] for r in results), 4),
        "async_write_s": round(statistics.median(r[1] for r in results), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = [measure("tiny", 32, args.repeats, root),
                measure("full", args.full_size, args.repeats, root)]  # fmt: skip
    print(json.dumps({"bench": "checkpoint_write", "machine": platform.machine(),
                      "threads": torch.get_num_threads(), "results": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
