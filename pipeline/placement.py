"""Where pipeline tasks run: GPU requests, CPU/memory requests, tolerations, torchrun.

Kubernetes facts live here so that `ct_pipeline.py` reads as the pipeline's shape only.
kfp.local ignores all of it (with a warning); Kubeflow turns it into the pod spec.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # kfp's authoring API is absent inside a running component
    from kfp.dsl import PipelineTask

GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str = "Exists"  # "Exists" | "Equal"
    effect: str | None = "NoSchedule"
    value: str | None = None


@dataclass(frozen=True)
class Placement:
    """Resources of the GPU (train) task and of the light tasks around it."""

    accelerator_type: str = GPU_RESOURCE
    train_cpu: str = "4"
    train_memory: str = "16Gi"
    light_cpu: str = "500m"
    light_memory: str = "2Gi"
    # GPU node pools are usually tainted so that only GPU work lands there.
    tolerations: tuple[Toleration, ...] = field(default_factory=lambda: (Toleration(GPU_RESOURCE),))
    # A retried train task resumes from the checkpoints on its output artifact.
    train_retries: int = 2


DEFAULT_PLACEMENT = Placement()


def place_on_gpus(task: PipelineTask, gpus: Any, placement: Placement = DEFAULT_PLACEMENT) -> None:
    """Ask for `gpus` accelerators (an int or a pipeline parameter) and tolerate GPU taints."""
    from kfp import kubernetes

    task.set_accelerator_type(placement.accelerator_type)
    task.set_accelerator_limit(gpus)
    task.set_cpu_request(placement.train_cpu)
    task.set_memory_request(placement.train_memory)
    for tol in placement.tolerations:
        kubernetes.add_toleration(
            task,
            key=tol.key,
            operator=tol.operator,
            value=tol.value,
            effect=tol.effect,
        )
    if placement.train_retries:
        task.set_retry(num_retries=placement.train_retries, backoff_duration="30s")


def place_light(task: PipelineTask, placement: Placement = DEFAULT_PLACEMENT) -> None:
    """Small CPU/memory requests for the bookkeeping steps."""
    task.set_cpu_request(placement.light_cpu)
    task.set_memory_request(placement.light_memory)


def torchrun_command(gpus: int, module: str, args: list[str]) -> list[str]:
    """The command that runs `python -m module args` on `gpus` local GPUs with DDP.

    One process per GPU on this node (`--standalone` sets up the rendezvous locally).
    """
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={gpus}",
        "-m",
        module,
        *args,
    ]
