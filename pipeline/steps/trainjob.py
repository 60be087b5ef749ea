"""Training on several nodes: a Kubeflow Trainer `TrainJob` created by the train step.

One pod stops at one machine. With `nodes > 1` the train step hands training to Kubeflow
Trainer (trainer.kubeflow.org/v1alpha1) and its `torch-distributed` runtime, which starts
`nodes` pods and sets torchrun's rendezvous for them (its PET_* variables); each pod runs
our trainer (`python -m pipeline.steps.train --job …`) as in the single-pod case. The step
waits for the job, reports its failure message, and reads the result that rank 0 left on
durable storage (`<durable dir>/train_result.json`) beside the checkpoints. A retried step
finds its TrainJob by name (one per request) and waits for it again instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
RUNTIME = "torch-distributed"
RESULT_FILE = "train_result.json"


class TrainJobError(Exception):
    """The TrainJob failed, or could not be created or followed (one-line message)."""


def trainjob_name(request_id: str) -> str:
    """A valid, stable object name per request: a retried step finds its job."""
    return "ganops-" + hashlib.sha256(request_id.encode()).hexdigest()[:16]


def trainjob_manifest(
    *,
    name: str,
    namespace: str,
    image: str,
    nodes: int,
    gpus_per_node: int,
    command: Sequence[str],
    env: Mapping[str, str],
) -> dict[str, Any]:
    """The TrainJob object: our image and command on `nodes` nodes of the torch runtime."""
    trainer: dict[str, Any] = {
        "image": image,
        "command": list(command),
        "numNodes": nodes,
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
    }
    if gpus_per_node:
        trainer["resourcesPerNode"] = {"limits": {"nvidia.com/gpu": gpus_per_node}}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "ganops"},
        },
        "spec": {
            "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": RUNTIME},
            "trainer": trainer,
        },
    }


def run_trainjob(
    api: Any, manifest: Mapping[str, Any], *, poll_s: float = 10.0, timeout_s: float = 7 * 86400
) -> dict[str, Any]:
    """Create the TrainJob (or find the one a previous attempt made) and wait for it.

    `api` is a kubernetes `CustomObjectsApi`. Returns the finished object.

    Raises:
        TrainJobError: the job failed (with its condition's message), or the API refused.
    """
    from kubernetes.client.exceptions import ApiException

    meta = manifest["metadata"]
    name, ns = meta["name"], meta["namespace"]
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, dict(manifest))
    except ApiException as exc:
        if exc.status != 409:  # 409: this request's job exists already; follow it
            raise TrainJobError(f"cannot create TrainJob {ns}/{name}: {_reason(exc)}") from None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            job = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        except ApiException as exc:
            raise TrainJobError(f"cannot read TrainJob {ns}/{name}: {_reason(exc)}") from None
        state, message = job_state(job)
        if state == "Complete":
            return dict(job)
        if state == "Failed":
            raise TrainJobError(f"TrainJob {ns}/{name} failed: {message or 'no message'}")
        time.sleep(poll_s)
    raise TrainJobError(f"TrainJob {ns}/{name} did not finish in {timeout_s:.0f} s")


def job_state(job: Mapping[str, Any]) -> tuple[str | None, str]:
    """("Complete" | "Failed" | None, message) from the TrainJob's status conditions."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"]), str(cond.get("message") or "")
    return None, ""


def read_result(durable_dir: str) -> dict[str, Any]:
    """What rank 0 reported, from durable storage (the nodes' folders are gone)."""
    from model import storage

    text = storage.read_text(f"{durable_dir}/{RESULT_FILE}")
    if text is None:
        raise TrainJobError(f"the TrainJob left no {RESULT_FILE} under {durable_dir}")
    data = json.loads(text)
    return data if isinstance(data, dict) else {}


def _reason(exc: Any) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)
