"""Training on several nodes: a Kubeflow Trainer `TrainJob` created by the train step.

One pod stops at one machine. With `nodes > 1` the train step hands training to Kubeflow
Trainer (trainer.kubeflow.org/v1alpha1) and its `torch-distributed` runtime, which starts
`nodes` pods and sets torchrun's rendezvous for them (its PET_* variables); each pod runs
our trainer (`python -m ganops.pipeline.steps.train --job …`) as in the single-pod case. The step
waits for the job, reports its failure message, and reads the result that rank 0 left on
durable storage (`<durable dir>/train_result.json`) beside the checkpoints. A retried step
finds its TrainJob by name (one per request) and waits for it again instead of starting over;
one that had failed is deleted and created anew, so the retry trains (from the checkpoint).

The job is owned by the run's Argo Workflow (read from this pod's owner), so deleting the run
deletes it; a cancelled or timed-out step (SIGTERM) deletes it itself, and the launcher's
cancel deletes it too (`delete_trainjob`). The object is built in `trainjob_spec`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ganops.pipeline.steps.trainjob_spec import (
    GROUP,
    PLURAL,
    RUNTIME,
    VERSION,
    NodePods,
    TrainJobSpecError,
    trainjob_manifest,
)

RESULT_FILE = "train_result.json"
__all__ = ["GROUP", "PLURAL", "RUNTIME", "VERSION", "NodePods", "TrainJobError",
           "delete_trainjob", "run_trainjob", "train_on_nodes", "trainjob_manifest",
           "trainjob_name"]  # fmt: skip


class TrainJobError(Exception):
    """The TrainJob failed, or could not be created or followed (one-line message)."""


def trainjob_name(request_id: str) -> str:
    """A valid, stable object name per request: a retried step finds its job."""
    return "ganops-" + hashlib.sha256(request_id.encode()).hexdigest()[:16]


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
    _create(api, manifest, poll_s=poll_s)
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


def _create(api: Any, manifest: Mapping[str, Any], *, poll_s: float) -> None:
    """Create the job; 409 (this request's job exists): follow it, unless it failed, in
    which case delete it and create it anew, so that a retried step trains again."""
    from kubernetes.client.exceptions import ApiException

    name, ns = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    for _ in range(2):
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, dict(manifest))
            return
        except ApiException as exc:
            if exc.status != 409:
                raise TrainJobError(f"cannot create TrainJob {ns}/{name}: {_reason(exc)}") from None
        try:
            found = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        except ApiException as exc:
            raise TrainJobError(f"cannot read TrainJob {ns}/{name}: {_reason(exc)}") from None
        state, message = job_state(found)
        if state != "Failed":
            return  # running or complete: this attempt follows it
        print(f"train: TrainJob {ns}/{name} had failed ({message or 'no message'}); "
              "deleting it to train again", flush=True)  # fmt: skip
        delete_trainjob(api, namespace=ns, name=name, wait_s=120, poll_s=poll_s)
    raise TrainJobError(f"TrainJob {ns}/{name} exists again after it was deleted")


def delete_trainjob(
    api: Any, *, namespace: str, name: str, wait_s: float = 0.0, poll_s: float = 1.0
) -> bool:
    """Delete the TrainJob (its pods follow, by the Trainer's ownership); False when there
    was none. With `wait_s`, wait that long for it to be gone.

    Raises:
        TrainJobError: the API refused.
    """
    from kubernetes.client.exceptions import ApiException

    try:
        api.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Foreground"
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise TrainJobError(f"cannot delete TrainJob {namespace}/{name}: {_reason(exc)}") from None
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                break
            raise TrainJobError(
                f"cannot read TrainJob {namespace}/{name}: {_reason(exc)}"
            ) from None
        time.sleep(poll_s)
    return True


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
    job: Any,
    *,
    nodes: int,
    gpus: int,
    image: str,
    pods: NodePods | None = None,
    api: Any = None,
    owner: Mapping[str, str] | None = None,
    poll_s: float = 10.0,
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
    try:
        manifest = trainjob_manifest(
            name=trainjob_name(durable),
            namespace=_namespace(),
            image=image,
            nodes=nodes,
            gpus_per_node=gpus,
            command=["torchrun", "-m", "ganops.pipeline.steps.train", "--job",
                     f"{durable}/train_job.json"],
            pods=pods,
            owner=owner if owner is not None else _own_workflow(),
        )  # fmt: skip
    except TrainJobSpecError as exc:
        raise TrainJobError(str(exc)) from None
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
    api = api or _in_cluster_api()
    meta = manifest["metadata"]
    with _deleted_when_stopped(api, namespace=meta["namespace"], name=meta["name"]):
        run_trainjob(api, manifest, poll_s=poll_s)
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


@contextlib.contextmanager
def _deleted_when_stopped(api: Any, *, namespace: str, name: str) -> Iterator[None]:
    """Delete the TrainJob when this step is stopped (SIGTERM: a cancelled run, the run
    timeout) rather than ending on its own: its GPUs would otherwise go on training."""
    previous = None
    if threading.current_thread() is threading.main_thread():

        def stop(signum: int, frame: Any) -> None:
            raise SystemExit(128 + signum)

        previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except (SystemExit, KeyboardInterrupt):
        print(f"train: stopped; deleting TrainJob {namespace}/{name}", flush=True)
        delete_trainjob(api, namespace=namespace, name=name)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _own_workflow() -> dict[str, str] | None:
    """This pod's Argo Workflow, read in the cluster (see `workflow_owner`)."""
    import os

    from kubernetes import client, config

    config.load_incluster_config()
    return workflow_owner(client.CoreV1Api(), namespace=_namespace(), pod=os.environ["HOSTNAME"])


def workflow_owner(core: Any, *, namespace: str, pod: str) -> dict[str, str] | None:
    """The Argo Workflow that owns pod `pod`, as an owner reference for the TrainJob:
    deleting the run deletes the job. None outside a workflow, or when the pod cannot be
    read (the job is then deleted by cancel and SIGTERM only)."""
    from kubernetes.client.exceptions import ApiException

    try:
        found = core.read_namespaced_pod(pod, namespace)
    except ApiException as exc:
        print(f"train: cannot read pod {namespace}/{pod} for the TrainJob's owner: "
              f"{_reason(exc)}", flush=True)  # fmt: skip
        return None
    for ref in found.metadata.owner_references or []:
        if ref.kind == "Workflow":
            return {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name,
                    "uid": ref.uid}  # fmt: skip
    return None


def _in_cluster_api() -> Any:
    from kubernetes import client, config

    config.load_incluster_config()
    return client.CustomObjectsApi()
