"""KubernetesDeployer: patch the serving Deployment, wait for the rollout, roll back on failure.

The pod template before the patch is kept in memory; when the rollout fails (the progress
deadline passes, or ours does) the deployer re-applies it, which is what `kubectl rollout undo`
does and the Python client lacks. The Deployment's annotations record the model, the version
now served and the one before it, so `current()` and `/ganops rollback` need no other state.
Patches are JSON patches: they replace the whole template, so they mean the same on every API
server. Each carries the resourceVersion it was computed from (optimistic concurrency: the
API server answers 409 Conflict when the Deployment changed since it was read). The rollback
after a failed rollout re-reads on a conflict: if the template is still the one this deploy
applied (only the status moved), it tries again; if someone else rolled out meanwhile, it
leaves their rollout alone and says so. A canary is a second Deployment beside this one
(`kube_canary`); a deploy ends one that runs.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes import client

from ganops.pipeline.deploy.kube_api import (
    ANN_MODEL,
    ANN_PREVIOUS,
    ANN_URI,
    ANN_VERSION,
    VERSION_ENV,
    DeployConflict,
    Deployments,
    Obj,
    Rollout,
    rollout_state,
    wait_rollout,
)
from ganops.pipeline.deploy.kube_canary import KubeCanary
from ganops.pipeline.deploy.target import KubeTarget
from ganops.pipeline.ports import CanaryServed, DeployError, DeployResult, Served

__all__ = [
    "ANN_MODEL",
    "ANN_PREVIOUS",
    "ANN_URI",
    "ANN_VERSION",
    "DeployConflict",
    "KubernetesDeployer",
    "Rollout",
    "rollout_state",
]

CONFLICT_RETRIES = 3  # re-reads after a 409 before the rollback gives up


class KubernetesDeployer:
    """Implements `pipeline.ports.Deployer` for one serving Deployment."""

    def __init__(
        self,
        target: KubeTarget,
        api_client: client.ApiClient | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = target
        self.deployments = Deployments(target, api_client)
        self.clock = clock
        self.sleep = sleep
        self._canary = KubeCanary(self)

    # --- the Deployer protocol ------------------------------------------------------------

    def current(self, model: str) -> str | None:
        annotations = _annotations(self._read())
        if annotations.get(ANN_MODEL) not in (None, model):
            return None
        return annotations.get(ANN_VERSION)

    def served(self, model: str) -> Served | None:
        """Read from the pod template, not only the Deployment's annotations: a bot killed
        between its patch and the end of the rollout leaves a template that the controller
        is still rolling (or has given up on), and that is what pods run."""
        dep = self._read()
        if _annotations(dep).get(ANN_MODEL) not in (None, model):
            return None
        template = dep.get("spec", {}).get("template", {})
        pod_annotations = (template.get("metadata") or {}).get("annotations") or {}
        version = pod_annotations.get(ANN_VERSION) or _annotations(dep).get(ANN_VERSION)
        if version is None:
            return None
        generation = int(dep.get("metadata", {}).get("generation") or 0)
        settled = rollout_state(dep, generation).done
        return Served(model, str(version), self.uri_in(template), settled=settled)

    def deploy(self, model: str, version: str, model_uri: str) -> DeployResult:
        """Roll the stable Deployment to `version`; a canary running beside it is removed
        once the rollout ends (and its replicas given back), as on the KServe target, where
        a deploy replaces the canary's predictor: the endpoint serves one version after."""
        return self._canary.promote(model, version, model_uri)

    def set_canary(self, model: str, version: str, model_uri: str, percent: int) -> DeployResult:
        return self._canary.set(model, version, model_uri, percent)

    def abort_canary(self, model: str) -> DeployResult:
        return self._canary.abort(model)

    def canary(self, model: str) -> CanaryServed | None:
        return self._canary.read(model)

    # --- steps ----------------------------------------------------------------------------

    def rollout(
        self, model: str, version: str, model_uri: str, *, replicas: int | None = None
    ) -> DeployResult:
        """`deploy`; `replicas` also sets the replica count (a promoted canary's)."""
        started = self.clock()
        before, patched, new_template = self._apply(model, version, model_uri, replicas)
        old_template = copy.deepcopy(before["spec"]["template"])
        old_annotations = _annotations(before)
        previous = old_annotations.get(ANN_VERSION)
        if old_annotations.get(ANN_MODEL) not in (None, model):
            previous = None
        rollout = self._wait(patched["metadata"].get("generation") or 0, started)
        seconds = self.clock() - started
        if rollout.done:
            return DeployResult(
                ok=True,
                model_uri=model_uri,
                version=version,
                previous_version=previous,
                rolled_back=False,
                seconds=seconds,
                message=f"rolled out {rollout.summary}",
            )
        why = rollout.failure or f"not ready within {self.target.progress_deadline_s:.0f} s"
        ours = patched.get("spec", {}).get("template", new_template)
        return self._roll_back(
            _Attempt(version, previous, ours, started), old_template, old_annotations, why
        )

    def _apply(
        self, model: str, version: str, model_uri: str, replicas: int | None
    ) -> tuple[Obj, Obj, Obj]:
        """Patch the Deployment to `version`: (as read before, as patched, the new template).
        A conflict because only the status moved (the controller, after a scale) is read
        again; one because the spec changed is someone else's rollout, and raised."""
        first: Obj | None = None
        for attempt in range(CONFLICT_RETRIES):
            before = self._read()
            first = first if first is not None else before["spec"]
            if before["spec"] != first:
                raise DeployConflict(f"deployment {self._where()} was changed meanwhile; try again")
            old = _annotations(before)
            annotations = {**old, ANN_MODEL: model, ANN_VERSION: version, ANN_URI: model_uri}
            if old.get(ANN_MODEL) in (None, model) and old.get(ANN_VERSION) is not None:
                annotations[ANN_PREVIOUS] = old[ANN_VERSION]
            template = self.template_for(before["spec"]["template"], version, model_uri)
            try:
                ops = _ops(before, template, annotations, replicas=replicas)
                return before, self._patch(ops), template
            except DeployConflict:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def template_for(self, template: Obj, version: str, model_uri: str) -> Obj:
        """The pod template with the model URI and version env vars (and image) of `version`
        set: the server labels its metrics with the version, which is how a canary's are told
        from the stable's."""
        new = copy.deepcopy(template)
        containers = new.get("spec", {}).get("containers", [])
        matches = [c for c in containers if c.get("name") == self.target.container]
        if not matches:
            names = ", ".join(c.get("name", "?") for c in containers) or "none"
            raise DeployError(
                f"deployment {self._where()} has no container {self.target.container!r} "
                f"(containers: {names})"
            )
        container = matches[0]
        ours = (self.target.model_uri_env, VERSION_ENV)
        env = [e for e in container.get("env", []) if e.get("name") not in ours]
        container["env"] = [
            *env,
            {"name": self.target.model_uri_env, "value": model_uri},
            {"name": VERSION_ENV, "value": version},
        ]
        if self.target.image:
            container["image"] = self.target.image.format(version=version)
        meta = new.setdefault("metadata", {})
        meta["annotations"] = {**(meta.get("annotations") or {}), ANN_VERSION: version}
        return new

    def _wait(self, generation: int, started: float) -> Rollout:
        return self.wait(self.target.deployment, generation, started)

    def wait(self, name: str, generation: int, started: float) -> Rollout:
        """Deployment `name`'s rollout of `generation`, awaited until the progress deadline."""
        return wait_rollout(
            lambda: self.deployments.read(name),
            generation,
            started + self.target.progress_deadline_s,
            poll_s=self.target.poll_s,
            clock=self.clock,
            sleep=self.sleep,
        )

    def _roll_back(
        self, attempt: _Attempt, old_template: Obj, old_annotations: dict[str, str], why: str
    ) -> DeployResult:
        version, previous, started = attempt.version, attempt.previous, attempt.started
        back_to = f"v{previous}" if previous else "the previous template"
        failed = f"rollout of v{version} failed ({why})"
        try:
            patched, current = self._patch_if_ours(attempt, old_template, old_annotations)
            if patched is None:
                theirs = _template_version(current)
                now = f"v{theirs}" if theirs is not None else "another template"
                message = (
                    f"{failed}; not rolled back: the Deployment was changed by someone else "
                    f"meanwhile (it now rolls out {now}), and that newer rollout is left as it is"
                )
                return self._result(version, previous, None, started, message)
            restored = self._wait(patched["metadata"].get("generation") or 0, self.clock())
        except DeployError as exc:
            return self._result(
                version, previous, None, started, f"{failed}; rollback to {back_to} FAILED: {exc}"
            )
        state = "ready" if restored.done else f"not ready yet: {restored.summary}"
        message = f"{failed}; rolled back to {back_to} ({state})"
        return self._result(version, previous, self.uri_in(old_template), started, message)

    def _patch_if_ours(
        self, attempt: _Attempt, template: Obj, annotations: dict[str, str]
    ) -> tuple[Obj | None, Obj]:
        """Patch back to `template` with the resourceVersion just read, while the Deployment
        still holds the template this deploy applied. Returns (the patched Deployment or None
        once someone else's rollout replaced ours, the Deployment as last read). A conflict
        (the status moved, or a rival patch landed) re-reads."""
        for _ in range(CONFLICT_RETRIES):
            current = self._read()
            if current.get("spec", {}).get("template") != attempt.ours:
                return None, current
            try:
                return self._patch(_ops(current, template, annotations)), current
            except DeployConflict:
                continue
        raise DeployError(f"the Deployment kept changing ({CONFLICT_RETRIES} conflicts in a row)")

    def uri_in(self, template: Obj) -> str:
        """The model URI a pod template serves (its env var on our container), or ""."""
        for container in template.get("spec", {}).get("containers", []):
            if container.get("name") == self.target.container:
                for env in container.get("env") or []:
                    if env.get("name") == self.target.model_uri_env:
                        return str(env.get("value") or "")
        return ""

    def _result(
        self, version: str, previous: str | None, served: str | None, started: float, message: str
    ) -> DeployResult:
        """A failed deploy; `served` is the URI back in service after a rollback, None if the
        rollback failed too."""
        return DeployResult(
            ok=False,
            model_uri=served or "",
            version=version,
            previous_version=previous,
            rolled_back=served is not None,
            seconds=self.clock() - started,
            message=message,
        )

    # --- the API ------------------------------------------------------------------------

    def _read(self) -> Obj:
        return self.deployments.read(self.target.deployment)

    def _patch(self, ops: list[Obj]) -> Obj:
        return self.deployments.patch(self.target.deployment, ops)

    def _where(self) -> str:
        return f"{self.target.namespace}/{self.target.deployment}"


@dataclass(frozen=True)
class _Attempt:
    """One deploy: what it rolled out, over what, the template it applied, when it began."""

    version: str
    previous: str | None
    ours: Obj  # the pod template as the API server stored our patch
    started: float


def _ops(
    dep: Obj, template: Obj, annotations: dict[str, str], *, replicas: int | None = None
) -> list[Obj]:
    """The patch, with the resourceVersion `dep` was read at: the API server applies it only
    if the Deployment still has that version (else 409 Conflict)."""
    ops: list[Obj] = []
    version = dep.get("metadata", {}).get("resourceVersion")
    if version:
        ops.append({"op": "replace", "path": "/metadata/resourceVersion", "value": version})
    ops.append({"op": "replace", "path": "/spec/template", "value": template})
    ops.append({"op": "add", "path": "/metadata/annotations", "value": annotations})
    if replicas is not None:
        ops.append({"op": "replace", "path": "/spec/replicas", "value": replicas})
    return ops


def _template_version(dep: Obj) -> str | None:
    template = dep.get("spec", {}).get("template", {})
    version = ((template.get("metadata") or {}).get("annotations") or {}).get(ANN_VERSION)
    return str(version) if version is not None else None


def _annotations(dep: Obj) -> dict[str, str]:
    return dict(dep.get("metadata", {}).get("annotations") or {})
