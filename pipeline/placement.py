"""Where pipeline tasks run: GPU requests, CPU/memory requests, tolerations, torchrun.

Kubernetes facts live here so that `ct_pipeline.py` reads as the pipeline's shape only.
kfp.local ignores all of it (with a warning); Kubeflow turns it into the pod spec.

The GPU count: tolerations, volumes and node selectors are fixed when the pipeline is
compiled (a pod spec cannot branch on a runtime parameter), so the Kubeflow launcher compiles
once per GPU count (`Placement.gpus`, known at launch) and a CPU run gets a plain pod. With
`gpus=None` (`ganops pipeline compile`, the YAML uploaded for the UI) the request follows the
`gpus` parameter and the GPU extras are always there: the uploaded pipeline is the GPU recipe.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # kfp's authoring API is absent inside a running component
    from kfp.dsl import PipelineTask

GPU_RESOURCE = "nvidia.com/gpu"
# A preempted node's replacement takes a while to join: wait before retrying the train task.
TRAIN_RETRY_BACKOFF = "30s"
# Object-storage credentials, taken from the data Secret when it has them (all optional):
# the AWS SDKs (s3fs) read these variables themselves, AWS_ENDPOINT_URL included.
DATA_SECRET_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
)


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
    # A retried train task resumes from the durable checkpoints (GANOPS_ARTIFACT_URI).
    train_retries: int = 2
    # The GPU count known at compile time (None: the runtime `gpus` parameter; see above).
    gpus: int | None = None
    # NCCL moves tensors through /dev/shm; a container's default 64 MiB is far too small.
    shm_size: str | None = "16Gi"
    gpu_node_selector: tuple[str, str] | None = None  # GANOPS_GPU_NODE_SELECTOR
    data_secret: str | None = None  # GANOPS_DATA_SECRET: env of every task
    # (claim, mount path): GANOPS_ARTIFACT_PVC mounted at GANOPS_ARTIFACT_URI in every task.
    artifact_pvc: tuple[str, str] | None = None
    # GANOPS_STEPS_IMAGE: the slim image (no torch) of the steps that load no network
    # (components.SLIM_STEPS); None: every step on the trainer image.
    steps_image: str | None = None


DEFAULT_PLACEMENT = Placement()


def place_on_gpus(task: PipelineTask, gpus: Any, placement: Placement = DEFAULT_PLACEMENT) -> None:
    """The train task: `gpus` accelerators (`placement.gpus` when known at compile time, else
    the pipeline parameter), and on GPUs the taint toleration, /dev/shm and node selector."""
    from kfp import kubernetes

    task.set_cpu_request(placement.train_cpu)
    task.set_memory_request(placement.train_memory)
    if placement.gpus is None or placement.gpus > 0:
        task.set_accelerator_type(placement.accelerator_type)
        task.set_accelerator_limit(gpus if placement.gpus is None else placement.gpus)
        for tol in placement.tolerations:
            kubernetes.add_toleration(
                task, key=tol.key, operator=tol.operator, value=tol.value, effect=tol.effect
            )
        kubernetes.empty_dir_mount(
            task,
            volume_name="dshm",
            mount_path="/dev/shm",
            medium="Memory",
            size_limit=placement.shm_size,
        )
        if placement.gpu_node_selector:
            kubernetes.add_node_selector(task, *placement.gpu_node_selector)
    if placement.train_retries:
        # Argo reads this as retryPolicy OnFailure, which skips preempted pods (Error phase);
        # manifests/kubeflow/argo-retry-patch.yaml adds Always controller-wide (docs/cluster.md).
        task.set_retry(
            num_retries=placement.train_retries,
            backoff_duration=TRAIN_RETRY_BACKOFF,
            backoff_factor=2.0,
            backoff_max_duration="3600s",
        )
    _credentials(task, placement)


def place_light(task: PipelineTask, placement: Placement = DEFAULT_PLACEMENT) -> None:
    """Small CPU/memory requests for the bookkeeping steps."""
    task.set_cpu_request(placement.light_cpu)
    task.set_memory_request(placement.light_memory)
    _credentials(task, placement)


def _credentials(task: PipelineTask, placement: Placement) -> None:
    # Every task: ingest reads the data, train writes checkpoints, and the MLflow steps may
    # write artifacts to the same store. The values never pass through the bot.
    from kfp import kubernetes

    if placement.data_secret:
        keys = {key: key for key in DATA_SECRET_KEYS}
        kubernetes.use_secret_as_env(task, placement.data_secret, keys, optional=True)
    if placement.artifact_pvc:
        claim, path = placement.artifact_pvc
        kubernetes.mount_pvc(task, pvc_name=claim, mount_path=path)


def node_pods(placement: Placement) -> str:
    """What each node of a multi-node TrainJob gets (`pipeline.steps.trainjob_spec.NodePods`),
    as JSON for the train step: the GPU recipe's tolerations, /dev/shm, node selector and
    data Secret, compiled in like the train pod's own."""
    from ganops.pipeline.steps.trainjob_spec import NodePods

    tolerations = tuple(
        {k: v for k, v in dataclasses.asdict(t).items() if v is not None}
        for t in placement.tolerations
    )
    selector = dict([placement.gpu_node_selector]) if placement.gpu_node_selector else {}
    return NodePods(
        data_secret=placement.data_secret,
        secret_keys=DATA_SECRET_KEYS if placement.data_secret else (),
        tolerations=tolerations,
        node_selector=selector,
        shm_size=placement.shm_size,
    ).to_json()


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
