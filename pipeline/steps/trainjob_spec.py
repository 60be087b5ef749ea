"""The TrainJob object, built as a dict and checked by the Trainer API's own models.

`kubeflow-trainer-api` (v2.3, trainer.kubeflow.org/v1alpha1) is the Trainer's generated
OpenAPI client. Its models ignore keys they do not know, so the manifest is read into
`TrainerV1alpha1TrainJob` and written back: anything the round trip loses (a misspelled or
misplaced field) or rejects (a wrong type) is an error here, not a silently ignored field on
the cluster.

What each node's pod needs beyond the image and command goes through the runtime's pod
overrides. In v2.3 these are `spec.runtimePatches` (`podTemplateOverrides` was the v2.0/2.1
field and is gone): a patch on the runtime's JobSet template, addressed by replicated-job
name (`node` in the `torch-distributed` runtime) and container name (`node`):
credentials and environment, /dev/shm, tolerations and the node selector.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
RUNTIME = "torch-distributed"
# The torch-distributed ClusterTrainingRuntime's replicated job and trainer container.
NODE_JOB = NODE_CONTAINER = "node"
PATCH_MANAGER = "ganops.io/train-step"
GPU = "nvidia.com/gpu"


class TrainJobSpecError(ValueError):
    """A TrainJob that cannot be built (bad placement, or fields the Trainer API lacks)."""


@dataclass(frozen=True)
class NodePods:
    """What every node's pod gets besides image and command; compiled into the pipeline
    (`pipeline.placement`) and handed to the train step as JSON."""

    env: dict[str, str] = field(default_factory=dict)
    data_secret: str | None = None  # its keys (DATA_SECRET_KEYS) become env, when present
    secret_keys: tuple[str, ...] = ()
    tolerations: tuple[dict[str, str], ...] = ()  # {"key", "operator", "effect", "value"}
    node_selector: dict[str, str] = field(default_factory=dict)
    shm_size: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NodePods:
        data = json.loads(text or "{}")
        data["secret_keys"] = tuple(data.get("secret_keys") or ())
        data["tolerations"] = tuple(data.get("tolerations") or ())
        return cls(**data)


def check_nodes(*, nodes: int, gpus_per_node: int) -> None:
    """Raises TrainJobSpecError for a multi-node run without GPUs (torchrun would start one
    process per CPU core on every node, and CPU DDP over the network only slows down)."""
    if nodes > 1 and gpus_per_node < 1:
        raise TrainJobSpecError(
            f"nodes={nodes} needs gpus=1 or more per node; without GPUs, train on one node"
        )


def trainjob_manifest(
    *,
    name: str,
    namespace: str,
    image: str,
    nodes: int,
    gpus_per_node: int,
    command: Sequence[str],
    pods: NodePods | None = None,
    owner: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The TrainJob for our image and command on `nodes` nodes of the torch runtime, one
    process per GPU; `owner` ({apiVersion, kind, name, uid}) is deleted with it.

    Raises:
        TrainJobSpecError: CPU-only nodes > 1, or a field the Trainer API does not know.
    """
    check_nodes(nodes=nodes, gpus_per_node=gpus_per_node)
    pods = pods or NodePods()
    trainer: dict[str, Any] = {
        "image": image,
        "command": list(command),
        "numNodes": nodes,
        "numProcPerNode": max(gpus_per_node, 1),
    }
    if gpus_per_node:
        trainer["resourcesPerNode"] = {"limits": {GPU: str(gpus_per_node)}}
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "ganops"},
    }
    if owner:
        metadata["ownerReferences"] = [{**owner, "controller": False}]
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": RUNTIME},
        "trainer": trainer,
    }
    patch = _pod_patch(pods, {**pods.env, **(env or {})})
    if patch:
        job = {"name": NODE_JOB, "template": {"spec": {"template": {"spec": patch}}}}
        spec["runtimePatches"] = [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [job]}}},
            }
        ]
    manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainJob",
                "metadata": metadata, "spec": spec}  # fmt: skip
    return validated(manifest)


def _pod_patch(pods: NodePods, env: Mapping[str, str]) -> dict[str, Any]:
    container: dict[str, Any] = {"name": NODE_CONTAINER}
    variables: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    if pods.data_secret:
        variables += [
            {"name": key, "valueFrom": {"secretKeyRef": {
                "name": pods.data_secret, "key": key, "optional": True}}}
            for key in pods.secret_keys
        ]  # fmt: skip
    if variables:
        container["env"] = variables
    pod: dict[str, Any] = {}
    if pods.shm_size:
        # NCCL moves tensors through /dev/shm; a container's default 64 MiB is far too small.
        container["volumeMounts"] = [{"name": "dshm", "mountPath": "/dev/shm"}]
        pod["volumes"] = [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": pods.shm_size}}
        ]
    if len(container) > 1:
        pod["containers"] = [container]
    if pods.tolerations:
        pod["tolerations"] = [dict(t) for t in pods.tolerations]
    if pods.node_selector:
        pod["nodeSelector"] = dict(pods.node_selector)
    return pod


def validated(manifest: dict[str, Any]) -> dict[str, Any]:
    """`manifest` as `TrainerV1alpha1TrainJob` reads and writes it; raises TrainJobSpecError
    when the models reject a value or lose a key."""
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob
    from pydantic import ValidationError

    try:
        model = TrainerV1alpha1TrainJob.from_dict(manifest)
    except (ValidationError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TrainJobSpecError(f"the Trainer API rejects this TrainJob: {first}") from None
    back = model.to_dict() if model is not None else {}
    lost = sorted(_missing(manifest, back))
    if lost:
        raise TrainJobSpecError(
            "fields the Trainer API (v1alpha1) does not know: " + ", ".join(lost)
        )
    return back


def _missing(wanted: Any, got: Any, path: str = "") -> list[str]:
    """Paths in `wanted` that `got` lacks or holds differently."""
    if isinstance(wanted, dict):
        if not isinstance(got, dict):
            return [path or "."]
        return [p for k, v in wanted.items()
                for p in _missing(v, got.get(k), f"{path}.{k}" if path else k)]  # fmt: skip
    if isinstance(wanted, list):
        if not isinstance(got, list) or len(got) != len(wanted):
            return [path]
        return [p for i, (w, g) in enumerate(zip(wanted, got, strict=True))
                for p in _missing(w, g, f"{path}[{i}]")]  # fmt: skip
    return [] if wanted == got else [path]


__all__ = ["GROUP", "NODE_CONTAINER", "NODE_JOB", "PLURAL", "RUNTIME", "VERSION", "NodePods",
           "TrainJobSpecError", "check_nodes", "trainjob_manifest", "validated"]  # fmt: skip
