"""What both cluster deployers share: loading the client, and one mapping from the API's
errors to `DeployError`s that say what to do (grant a verb, retry after a conflict, …)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from ganops.pipeline.deploy.target import KubeTarget
from ganops.pipeline.ports import DeployError

Obj = dict[str, Any]

# What the Deployment (and its pod template) say about the model they serve.
ANN_MODEL = "ganops.io/model"
ANN_VERSION = "ganops.io/model-version"
ANN_PREVIOUS = "ganops.io/previous-version"
ANN_URI = "ganops.io/model-uri"
VERSION_ENV = "GANOPS_MODEL_VERSION"  # `ganops serve` labels its metrics with it


class DeployConflict(DeployError):
    """The object changed between our read and our write (409 Conflict, or 422 from a JSON
    patch whose resourceVersion test failed): read it again and retry, or give up."""


def api_error(
    exc: ApiException | HTTPError,
    verb: str,
    *,
    resource: str,
    namespace: str,
    name: str,
    not_found: str = "not found",
) -> DeployError:
    """`exc` from `verb` on `resource` (e.g. "deployments.apps") `namespace/name` as one line.

    `not_found` says what a 404 means for this object (a missing CRD, say)."""
    where = f"{namespace}/{name}"
    if not isinstance(exc, ApiException):
        return DeployError(f"the Kubernetes API cannot be reached ({verb} {where}): {exc}")
    detail = server_message(exc)
    kind = resource.split(".", 1)[0]  # "deployments"
    if exc.status == 403:
        return DeployError(
            f"RBAC: the bot may not {verb} {resource} {name!r} in namespace {namespace!r} "
            f"(403 Forbidden: {detail}); grant '{verb}' on {kind} in the bot's Role"
        )
    if exc.status == 401:
        return DeployError(f"the Kubernetes API rejected the bot's credentials (401): {detail}")
    if exc.status == 404:
        return DeployError(f"{kind.rstrip('s')} {where} {not_found} (404: {detail})")
    if exc.status in (409, 422):
        return DeployConflict(
            f"{kind.rstrip('s')} {where} changed while it was being written "
            f"({exc.status}: {detail}); try again"
        )
    return DeployError(f"Kubernetes API error {exc.status} on {verb} {where}: {detail}")


def server_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


def load_client(target: KubeTarget) -> client.ApiClient:
    try:
        if target.in_cluster:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
        api_client: client.ApiClient = config.new_client_from_config(config_file=target.kubeconfig)
        return api_client
    except (config.ConfigException, OSError) as exc:
        where = "in-cluster service account" if target.in_cluster else "kubeconfig"
        raise DeployError(f"cannot load the Kubernetes {where}: {exc}") from None


class Deployments:
    """apps/v1 Deployments in one namespace, read and written as plain dicts (what the API
    server sent, unparsed), with every error mapped by `api_error`."""

    def __init__(self, target: KubeTarget, api_client: client.ApiClient | None) -> None:
        self.target = target
        self._api_client = api_client
        self._apps: client.AppsV1Api | None = None

    def api(self) -> client.AppsV1Api:
        if self._apps is None:
            self._apps = client.AppsV1Api(self._api_client or load_client(self.target))
        return self._apps

    def read(self, name: str) -> Obj:
        ns = self.target.namespace
        return self._call("get", name, self.api().read_namespaced_deployment, name, ns)

    def read_or_none(self, name: str) -> Obj | None:
        """The Deployment, or None where there is none (404)."""
        try:
            resp = self.api().read_namespaced_deployment(
                name, self.target.namespace, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self.error(exc, "get", name) from None
        except HTTPError as exc:
            raise self.error(exc, "get", name) from None
        obj: Obj = json.loads(resp.data)
        return obj

    def patch(self, name: str, ops: list[Obj]) -> Obj:
        """A JSON patch (the client sends a list body as application/json-patch+json)."""
        ns = self.target.namespace
        return self._call("patch", name, self.api().patch_namespaced_deployment, name, ns, ops)

    def create(self, body: Obj) -> Obj:
        name = str(body["metadata"]["name"])
        ns = self.target.namespace
        return self._call("create", name, self.api().create_namespaced_deployment, ns, body)

    def delete(self, name: str) -> bool:
        """Delete it and let the garbage collector take its ReplicaSets and pods; False when
        it was gone already."""
        try:
            self.api().delete_namespaced_deployment(
                name,
                self.target.namespace,
                propagation_policy="Background",
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise self.error(exc, "delete", name) from None
        except HTTPError as exc:
            raise self.error(exc, "delete", name) from None
        return True

    def error(self, exc: ApiException | HTTPError, verb: str, name: str) -> DeployError:
        return api_error(
            exc, verb, resource="deployments.apps", namespace=self.target.namespace, name=name
        )

    def _call(self, verb: str, name: str, fn: Callable[..., Any], *args: Any) -> Obj:
        try:
            resp = fn(*args, _preload_content=False)
        except (ApiException, HTTPError) as exc:
            raise self.error(exc, verb, name) from None
        obj: Obj = json.loads(resp.data)
        return obj


@dataclass(frozen=True)
class Rollout:
    done: bool
    failure: str | None  # why it can no longer succeed (ProgressDeadlineExceeded)
    summary: str  # "2/3 updated, 1/3 available"


def rollout_state(dep: Obj, generation: int) -> Rollout:
    """Where a Deployment's rollout stands, read the way `kubectl rollout status` reads it."""
    want = dep.get("spec", {}).get("replicas")
    want = 1 if want is None else int(want)
    status = dep.get("status") or {}
    if int(status.get("observedGeneration") or 0) < generation:
        return Rollout(False, None, f"waiting for the controller to see generation {generation}")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Rollout(
                False, f"ProgressDeadlineExceeded: {cond.get('message', '')}".strip(), ""
            )
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    summary = f"{updated}/{want} updated, {available}/{want} available, {ready}/{want} ready"
    if total > updated:
        summary += f", {total - updated} old pending termination"
    done = updated >= want and total <= updated and available >= want and ready >= want
    return Rollout(done, None, f"{want}/{want} replicas" if done else summary)


def wait_rollout(
    read: Callable[[], Obj],
    generation: int,
    deadline: float,
    *,
    poll_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Rollout:
    """Poll `read` until the rollout of `generation` is done, fails, or `deadline` passes."""
    rollout = Rollout(False, None, "not observed yet")
    while True:
        try:
            rollout = rollout_state(read(), generation)
        except DeployError as exc:  # a blip while reading: keep trying until the deadline
            rollout = Rollout(False, None, str(exc))
        if rollout.done or rollout.failure or clock() >= deadline:
            return rollout
        sleep(poll_s)
