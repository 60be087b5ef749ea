"""Training on several nodes: a Kubeflow Trainer `TrainJob` created by the train step.

One pod stops at one machine. With `nodes > 1` the train step hands training to Kubeflow
Trainer (trainer.kubeflow.org/v1alpha1) and its `torch-distributed` runtime, which starts
`nodes` pods and sets torchrun's rendezvous for them (its PET_* variables); each pod runs
our trainer (`python -m ganops.pipeline.steps.train --job …`) as in the single-pod case. The step
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
    from ganops.model import storage

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


# --- the train step's side (the pipeline pod) and the nodes' side ----------------------

NODE_DIR = "/tmp/ganops-train"  # each node's scratch folder (the pipeline pod's is elsewhere)


def train_on_nodes(
    job: Any, *, nodes: int, gpus: int, image: str, api: Any = None, poll_s: float = 10.0
) -> dict[str, Any]:
    """Run `job` (a `pipeline.steps.train.TrainJob`) as a TrainJob on `nodes` nodes.

    The nodes share nothing with this pod but durable storage: the data, the job and, back,
    the bundle, the loss curve and the result travel through `job.durable_dir`.

    Raises:
        TrainJobError: no durable storage, or the TrainJob failed.
    """
    import dataclasses
    from pathlib import Path

    from ganops.model import storage

    durable = job.durable_dir
    if not durable:
        raise TrainJobError("nodes > 1 needs GANOPS_ARTIFACT_URI: the nodes share data through it")
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    storage.upload_dir(Path(job.data_dir), f"{durable}/data")
    remote = dataclasses.replace(
        job,
        data_dir=f"{durable}/data",
        out_dir=NODE_DIR,
        loss_curve_path=f"{NODE_DIR}/loss_curve.png",
        events_dir="",  # progress goes to MLflow, as on Kubeflow
        upload_outputs=True,
    )
    job_url = f"{durable}/train_job.json"
    storage.write_text(job_url, json.dumps(dataclasses.asdict(remote)), scratch=out / ".job")
    manifest = trainjob_manifest(
        name=trainjob_name(durable),
        namespace=_namespace(),
        image=image,
        nodes=nodes,
        gpus_per_node=gpus,
        command=["torchrun", "-m", "ganops.pipeline.steps.train", "--job", job_url],
        env={},
    )
    run_trainjob(api or _in_cluster_api(), manifest, poll_s=poll_s)
    result = read_result(durable)
    storage.download_dir(f"{durable}/bundle", out / "bundle")
    storage.download(f"{durable}/loss_curve.png", Path(job.loss_curve_path))
    return result


def node_job(url: str, rank: int) -> Any:
    """On a node: the job from durable storage, with the data fetched to this node."""
    from pathlib import Path

    from ganops.model import storage
    from ganops.pipeline.steps.job import TrainJob

    text = storage.read_text(url)
    if text is None:
        raise TrainJobError(f"no train job at {url}")
    job = TrainJob(**json.loads(text))
    local = Path(job.out_dir) / f"data-rank{rank}"  # ranks of one node fetch side by side
    storage.download_dir(job.data_dir, local)
    return TrainJob(**{**json.loads(text), "data_dir": str(local)})


def upload_outputs(job: Any, result: Mapping[str, Any]) -> None:
    """Rank 0 on a node: what the train step needs back, beside the checkpoints."""
    from pathlib import Path

    from ganops.model import storage

    durable = job.durable_dir
    storage.upload_dir(Path(job.out_dir) / "bundle", f"{durable}/bundle")
    storage.upload(Path(job.loss_curve_path), f"{durable}/loss_curve.png")
    text = json.dumps(dict(result), default=str)
    storage.write_text(f"{durable}/{RESULT_FILE}", text, scratch=Path(job.out_dir) / ".result")


def _namespace() -> str:
    # The pod's own namespace, from its service-account mount: TrainJobs go beside the run.
    from pathlib import Path

    return Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()


def _in_cluster_api() -> Any:
    from kubernetes import client, config

    config.load_incluster_config()
    return client.CustomObjectsApi()
