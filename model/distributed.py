"""torch.distributed plumbing: set-up from torchrun's environment, device choice, DDP wrap.

`main()` reads the environment and calls `setup(...)` once; library code asks `current()`
for the rank and world size, so nothing below `main()` reads environment variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def info_from_env(env: Mapping[str, str]) -> DistInfo:
    """torchrun's RANK / WORLD_SIZE / LOCAL_RANK, or a single process when they are absent.

    Raises:
        ValueError: when the variables are present but not integers.
    """
    try:
        return DistInfo(
            rank=int(env.get("RANK", "0")),
            world_size=int(env.get("WORLD_SIZE", "1")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
        )
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None


def pick_device(info: DistInfo = DistInfo()) -> torch.device:
    """CUDA (this process's local GPU) when present, else the CPU. Called once, by main."""
    if torch.cuda.is_available():
        return torch.device("cuda", info.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup(info: DistInfo, device: torch.device, init_method: str = "env://") -> None:
    """Join the process group when there are several processes: NCCL on CUDA, gloo on CPU."""
    if not info.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        init_method=init_method,
        rank=info.rank,
        world_size=info.world_size,
        timeout=timedelta(minutes=10),
    )


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current() -> DistInfo:
    """This process's place in the process group (a single process when there is none)."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = rank % max(torch.cuda.device_count(), 1) if torch.cuda.is_available() else 0
        return DistInfo(rank=rank, world_size=world, local_rank=local)
    return DistInfo()


def wrap(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """`module` in DDP when this run has several processes; unchanged otherwise."""
    if not info.distributed:
        return module
    if device.type != "cuda":
        # SyncBatchNorm needs GPUs: on CPU each rank keeps its own batch statistics, and DDP
        # broadcasts rank 0's running statistics before every forward (its default).
        return DistributedDataParallel(module)
    module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return DistributedDataParallel(module, device_ids=[device.index])


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
