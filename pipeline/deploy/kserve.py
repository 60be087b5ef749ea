"""KServeDeployer: roll a KServe InferenceService to a model version, wait, roll back on failure.

The same port (`pipeline.ports.Deployer`) as the Deployment target, the same way: the object's
annotations say which model and version serve and which served before, so `current()`,
`served()` (the start-up reconciliation) and `/ganops rollback` need no other state; a patch is
a JSON patch whose first op tests the resourceVersion, so a concurrent change is refused, not
overwritten; when the new revision does not become ready the previous predictor is put back.
The first deploy creates the InferenceService (`kserve_spec.inference_service`); later ones
change only our container's image, arguments and model env in the predictor found there, so
what the manifest set (resources, probes, scaling) stays. A canary is KServe's own
`canaryTrafficPercent` (`kserve_canary`, Serverless mode); a deploy ends one that runs.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from kserve import ApiClient as KServeApiClient
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from ganops.pipeline.deploy.kserve_canary import CANARY_ANNOTATIONS, KServeCanary
from ganops.pipeline.deploy.kserve_spec import (
    ANN_MODEL,
    ANN_PREVIOUS,
    ANN_URI,
    ANN_VERSION,
    CONTAINER,
    Obj,
    Rollout,
    inference_service,
    merge_predictor,
    rollout_state,
    storage_uri_for,
)
from ganops.pipeline.deploy.kube_api import api_error, load_client
from ganops.pipeline.deploy.target import KServeTarget, KubeTarget
from ganops.pipeline.ports import CanaryServed, DeployError, DeployResult, Served

log = logging.getLogger(__name__)
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"

Locate = Callable[[str], str | None]  # models:/ URI -> the version's artifact location


class KServeDeployer:
    """Implements `pipeline.ports.Deployer` for one InferenceService."""

    def __init__(
        self,
        target: KServeTarget,
        api_client: client.ApiClient | None = None,
        *,
        locate: Locate | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = target
        self._api_client = api_client
        self._locate = locate
        self.clock = clock
        self.sleep = sleep
        self._canary = KServeCanary(self)

    # --- the Deployer protocol ------------------------------------------------------------

    def current(self, model: str) -> str | None:
        isvc = self._read()
        annotations = _annotations(isvc)
        if isvc is None or annotations.get(ANN_MODEL) not in (None, model):
            return None
        return annotations.get(ANN_VERSION)

    def served(self, model: str) -> Served | None:
        """From the predictor (its annotation and env), settled when KServe reports the
        newest revision ready: a bot killed mid-rollout finds what the pods run."""
        isvc = self._read()
        if isvc is None or _annotations(isvc).get(ANN_MODEL) not in (None, model):
            return None
        predictor = isvc.get("spec", {}).get("predictor") or {}
        version = (predictor.get("annotations") or {}).get(ANN_VERSION)
        if CANARY_ANNOTATIONS & _annotations(isvc).keys():
            version = None  # the predictor is the canary's; the stable is the annotated one
        version = version or _annotations(isvc).get(ANN_VERSION)
        if version is None:
            return None
        uri = _annotations(isvc).get(ANN_URI, "")
        generation = int(isvc.get("metadata", {}).get("generation") or 0)
        return Served(model, str(version), uri, settled=rollout_state(isvc, generation).done)

    def deploy(self, model: str, version: str, model_uri: str) -> DeployResult:
        started = self.clock()
        before = self._read()
        wanted = self._wanted(model, version, model_uri, _annotations(before))
        if before is None:
            created = self._call(
                "create",
                self._objects().create_namespaced_custom_object,
                GROUP,
                VERSION,
                self.target.namespace,
                PLURAL,
                wanted,
            )
            rollout = self._wait(int(created["metadata"].get("generation") or 1), started)
            return self._outcome(rollout, version, None, model_uri, started, rollback=None)
        old_predictor = copy.deepcopy(before["spec"]["predictor"])
        old_annotations = _annotations(before)
        previous = old_annotations.get(ANN_VERSION)
        if old_annotations.get(ANN_MODEL) not in (None, model):
            previous = None
        annotations = dict(wanted["metadata"]["annotations"])
        if previous is not None:
            annotations[ANN_PREVIOUS] = previous
        predictor = merge_predictor(old_predictor, wanted["spec"]["predictor"])
        patched = self._patch(_ops(before, predictor, annotations))
        rollout = self._wait(int(patched["metadata"].get("generation") or 0), started)
        back = (old_predictor, old_annotations)
        return self._outcome(rollout, version, previous, model_uri, started, rollback=back)

    def set_canary(self, model: str, version: str, model_uri: str, percent: int) -> DeployResult:
        """Serverless: `canaryTrafficPercent`; see `kserve_canary`."""
        return self._canary.set(model, version, model_uri, percent)

    def abort_canary(self, model: str) -> DeployResult:
        return self._canary.abort(model)

    def canary(self, model: str) -> CanaryServed | None:
        return self._canary.read(model)

    # --- steps ----------------------------------------------------------------------------

    def _predictor_for(self, before: Obj, model: str, version: str, model_uri: str) -> Obj:
        """`before`'s predictor with our container set to serve `version`."""
        wanted = self._wanted(model, version, model_uri, _annotations(before))
        return merge_predictor(before["spec"]["predictor"], wanted["spec"]["predictor"])

    def _wanted(self, model: str, version: str, model_uri: str, annotations: dict[str, str]) -> Obj:
        storage = None
        if self._locate is not None:
            try:
                storage = storage_uri_for(self._locate(model_uri))
            except Exception as exc:  # the registry's own errors; MLflow then serves it
                log.warning(
                    "cannot resolve %s to its artifact (%s); pods load it via MLflow",
                    model_uri,
                    exc,
                )
        isvc = inference_service(
            self.target,
            model=model,
            version=version,
            model_uri=model_uri,
            storage_uri=storage,
            annotations={
                k: v
                for k, v in annotations.items()
                if k != ANN_PREVIOUS and k not in CANARY_ANNOTATIONS  # a deploy ends a canary
            },
        )
        body: Obj = KServeApiClient().sanitize_for_serialization(isvc)
        return body

    def _outcome(
        self,
        rollout: Rollout,
        version: str,
        previous: str | None,
        model_uri: str,
        started: float,
        *,
        rollback: tuple[Obj, dict[str, str]] | None,
    ) -> DeployResult:
        if rollout.done:
            return DeployResult(
                True,
                model_uri,
                version,
                previous,
                False,
                self.clock() - started,
                f"rolled out ({rollout.summary})",
            )
        why = rollout.failure or f"not ready within {self.target.progress_deadline_s:.0f} s"
        if rollback is None:
            message = f"rollout of v{version} failed ({why}); no earlier predictor to restore"
            return DeployResult(False, "", version, None, False, self.clock() - started, message)
        back_to = f"v{previous}" if previous else "the previous predictor"
        try:
            current = self._read()
            if current is None:
                raise DeployError(f"inferenceservice {self._where()} is gone")
            patched = self._patch(_ops(current, rollback[0], rollback[1], test=False))
            restored = self._wait(int(patched["metadata"].get("generation") or 0), self.clock())
        except DeployError as exc:
            message = f"rollout of v{version} failed ({why}); rollback to {back_to} FAILED: {exc}"
            return DeployResult(
                False, "", version, previous, False, self.clock() - started, message
            )
        state = "ready" if restored.done else f"not ready yet: {restored.summary}"
        message = f"rollout of v{version} failed ({why}); rolled back to {back_to} ({state})"
        served = rollback[1].get(ANN_URI, "")
        return DeployResult(False, served, version, previous, True, self.clock() - started, message)

    def _wait(self, generation: int, started: float) -> Rollout:
        deadline = started + self.target.progress_deadline_s
        rollout = Rollout(False, None, "not observed yet")
        while True:
            try:
                isvc = self._read()
                if isvc is not None:
                    rollout = rollout_state(isvc, generation)
            except DeployError as exc:  # a blip while reading: keep trying until the deadline
                rollout = Rollout(False, None, str(exc))
            if rollout.done or rollout.failure or self.clock() >= deadline:
                return rollout
            self.sleep(self.target.poll_s)

    # --- the API ------------------------------------------------------------------------

    def _client(self) -> client.ApiClient:
        if self._api_client is None:
            t = self.target
            kube = KubeTarget(
                t.namespace, t.name, CONTAINER, kubeconfig=t.kubeconfig, in_cluster=t.in_cluster
            )
            self._api_client = load_client(kube)
        return self._api_client

    def _objects(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self._client())

    def _read(self) -> Obj | None:
        t = self.target
        try:
            obj: Obj = self._objects().get_namespaced_custom_object(
                GROUP, VERSION, t.namespace, PLURAL, t.name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._error(exc, "get") from None
        except HTTPError as exc:
            raise self._error(exc, "get") from None
        return obj

    def _patch(self, ops: list[Obj]) -> Obj:
        """A JSON patch: CustomObjectsApi would send a merge patch, which cannot test the
        resourceVersion or replace the predictor exactly."""
        t = self.target
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{t.namespace}/{PLURAL}/{t.name}"
        headers = {"Content-Type": "application/json-patch+json", "Accept": "application/json"}
        resp = self._call(
            "patch",
            self._client().call_api,
            path,
            "PATCH",
            header_params=headers,
            body=ops,
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
        return resp

    def _call(self, verb: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        try:
            result = fn(*args, **kwargs)
        except (ApiException, HTTPError) as exc:
            raise self._error(exc, verb) from None
        response = result[0] if isinstance(result, tuple) else result
        if hasattr(response, "data"):
            obj: Obj = json.loads(response.data)
            return obj
        return dict(response)

    def _where(self) -> str:
        return f"{self.target.namespace}/{self.target.name}"

    def _error(self, exc: ApiException | HTTPError, verb: str) -> DeployError:
        return api_error(
            exc,
            verb,
            resource="inferenceservices.serving.kserve.io",
            namespace=self.target.namespace,
            name=self.target.name,
            not_found="not found, or KServe's CRD is not installed",
        )


def _ops(isvc: Obj, predictor: Obj, annotations: dict[str, str], test: bool = True) -> list[Obj]:
    ops: list[Obj] = []
    version = isvc.get("metadata", {}).get("resourceVersion")
    if test and version:
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": version})
    ops.append({"op": "replace", "path": "/spec/predictor", "value": predictor})
    ops.append({"op": "add", "path": "/metadata/annotations", "value": annotations})
    return ops


def _annotations(isvc: Obj | None) -> dict[str, str]:
    return dict(((isvc or {}).get("metadata") or {}).get("annotations") or {})
