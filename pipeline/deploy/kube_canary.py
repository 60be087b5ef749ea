"""The plain-Deployment canary: a second Deployment, `<deployment>-canary`, beside the stable
one, behind the same Service, with the replicas split in proportion to the canary's share.

A Service spreads connections evenly over the ready pods it selects, so the canary's share of
traffic is its share of the pods (as with Argo Rollouts' canary without a traffic router). The
Service selects on `app.kubernetes.io/name` only; the two Deployments' selectors add
`ganops.io/track: stable` / `canary`, so neither adopts the other's pods (two Deployments
whose selectors overlap fight over them). Everything a restarted bot needs is on the canary
Deployment: its version (env and annotation), the asked percent, and the stable's replica
count before the split, which abort and promote put back.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from ganops.pipeline.deploy.kube_api import (
    ANN_MODEL,
    ANN_URI,
    ANN_VERSION,
    VERSION_ENV,
    DeployConflict,
    Deployments,
    Obj,
    Rollout,
)
from ganops.pipeline.deploy.target import KubeTarget
from ganops.pipeline.ports import CanaryServed, DeployError, DeployResult

TRACK = "ganops.io/track"  # stable | canary, in both Deployments' selectors and pod labels
ANN_PERCENT = "ganops.io/canary-percent"  # the share asked for, 1..99
ANN_SHARE = "ganops.io/canary-share"  # the share whole pods give, in percent
ANN_STABLE_REPLICAS = "ganops.io/stable-replicas"  # the stable's replicas before the split
CONFLICT_RETRIES = 3


class Stable(Protocol):
    """What the canary needs of the deployer of the stable Deployment."""

    target: KubeTarget
    deployments: Deployments
    clock: Callable[[], float]

    def rollout(
        self, model: str, version: str, model_uri: str, *, replicas: int | None = None
    ) -> DeployResult: ...

    def template_for(self, template: Obj, version: str, model_uri: str) -> Obj: ...

    def wait(self, name: str, generation: int, started: float) -> Rollout: ...

    def uri_in(self, template: Obj) -> str: ...


def split(replicas: int, percent: int) -> tuple[int, int]:
    """(canary, stable) pods out of `replicas` (at least 2: one each) whose canary share is
    nearest `percent`; a tie goes to the smaller canary."""
    total = max(replicas, 2)
    canary = math.ceil(percent * total / 100 - 0.5)
    canary = min(max(canary, 1), total - 1)
    return canary, total - canary


class KubeCanary:
    def __init__(self, stable: Stable) -> None:
        self.stable = stable
        self.deployments = stable.deployments
        self.name = self.name_for(stable.target.deployment)

    @staticmethod
    def name_for(deployment: str) -> str:
        """The canary Deployment's name (the bot's Role names it too)."""
        return f"{deployment}-canary"

    def set(self, model: str, version: str, model_uri: str, percent: int) -> DeployResult:
        if not 1 <= percent <= 100:
            raise DeployError(f"a canary takes 1..100 percent of the traffic, not {percent}")
        if percent == 100:
            return self.promote(model, version, model_uri)
        started = self.stable.clock()
        stable = self.deployments.read(self.stable.target.deployment)
        self._check_selector(stable)
        existing = self.deployments.read_or_none(self.name)
        replicas = _stable_replicas(stable, existing)
        pods, rest = split(replicas, percent)
        share = round(100 * pods / (pods + rest))
        annotations = {
            ANN_MODEL: model,
            ANN_VERSION: version,
            ANN_URI: model_uri,
            ANN_PERCENT: str(percent),
            ANN_SHARE: str(share),
            ANN_STABLE_REPLICAS: str(replicas),
        }
        template = self.stable.template_for(stable["spec"]["template"], version, model_uri)
        body = canary_deployment(stable, self.name, template, annotations, pods)
        if rest > int(stable["spec"].get("replicas") or 1):
            self._scale_stable(rest)  # a smaller canary: the stable grows first, no dip
        written = self._write(body, existing)
        generation = int(written["metadata"].get("generation") or 1)
        rollout = self.stable.wait(self.name, generation, started)
        stable_version = _annotations(stable).get(ANN_VERSION)
        if not rollout.done:
            deadline = self.stable.target.progress_deadline_s
            why = rollout.failure or f"not ready within {deadline:.0f} s"
            return self._remove_failed(stable, version, replicas, why, started)
        self._scale_stable(rest)  # a larger canary: only once it serves does the stable shrink
        return DeployResult(
            ok=True,
            model_uri=model_uri,
            version=version,
            previous_version=stable_version,
            rolled_back=False,
            seconds=self.stable.clock() - started,
            message=f"canary v{version} at {percent}% asked: {pods} of {pods + rest} pods "
            f"({share}%), {rest} stable",
        )

    def promote(self, model: str, version: str, model_uri: str) -> DeployResult:
        """The stable Deployment rolls to the canary's version (a rolling update, awaited, rolled
        back on failure) with its replicas from before the split; then the canary goes."""
        existing = self.deployments.read_or_none(self.name)
        replicas = None
        if existing is not None:
            stable = self.deployments.read(self.stable.target.deployment)
            replicas = _stable_replicas(stable, existing)
        result = self.stable.rollout(model, version, model_uri, replicas=replicas)
        if existing is None:
            return result
        self.deployments.delete(self.name)
        return replace(result, message=f"{result.message}; canary Deployment removed")

    def abort(self, model: str) -> DeployResult:
        started = self.stable.clock()
        existing = self.deployments.read_or_none(self.name)
        stable = self.deployments.read(self.stable.target.deployment)
        version = _annotations(stable).get(ANN_VERSION) or ""
        uri = self.stable.uri_in(stable["spec"]["template"])
        if existing is None:
            seconds = self.stable.clock() - started
            return DeployResult(True, uri, version, None, False, seconds, "no canary running")
        replicas = _stable_replicas(stable, existing)
        # The stable scales back first: a crash in between leaves the canary (and the replica
        # count to restore) for the next abort to find.
        self._scale_stable(replicas)
        self.deployments.delete(self.name)
        gone = _annotations(existing).get(ANN_VERSION, "?")
        message = f"canary v{gone} removed; v{version} takes all traffic on {replicas} replicas"
        return DeployResult(True, uri, version, None, True, self.stable.clock() - started, message)

    def read(self, model: str) -> CanaryServed | None:
        dep = self.deployments.read_or_none(self.name)
        if dep is None or _annotations(dep).get(ANN_MODEL) not in (None, model):
            return None
        template = dep.get("spec", {}).get("template") or {}
        version = _env(template, VERSION_ENV) or _annotations(dep).get(ANN_VERSION)
        if version is None:
            return None
        stable = self.deployments.read(self.stable.target.deployment)
        try:
            percent = int(_annotations(dep)[ANN_PERCENT])
        except (KeyError, ValueError):  # not ours, or hand-edited: its share of the pods
            pods = int(dep.get("spec", {}).get("replicas") or 1)
            percent = round(100 * pods / (pods + int(stable["spec"].get("replicas") or 1)))
        stable_version = _annotations(stable).get(ANN_VERSION)
        uri = self.stable.uri_in(template)
        return CanaryServed(model, str(version), uri, percent, stable_version)

    # --- steps ----------------------------------------------------------------------------

    def _check_selector(self, stable: Obj) -> None:
        selector = (stable.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        if selector.get(TRACK) not in (None, "canary"):
            return
        t = self.stable.target
        raise DeployError(
            f"deployment {t.namespace}/{t.deployment} selects its pods without "
            f"{TRACK}: stable, so it would adopt a canary's pods too; its selector is immutable: "
            f"re-create it from manifests/serving (docs/serving.md, 'The serving selector')"
        )

    def _write(self, body: Obj, existing: Obj | None) -> Obj:
        """Create the canary, or patch the one there (a new step or a new version; its
        selector stays: it is immutable). A conflict (its status moved) is read again."""
        for attempt in range(CONFLICT_RETRIES):
            if existing is None:
                return self.deployments.create(body)
            try:
                return self.deployments.patch(self.name, _ops(existing, body))
            except DeployConflict:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                existing = self.deployments.read_or_none(self.name)
        raise AssertionError("unreachable")

    def _remove_failed(
        self, stable: Obj, version: str, replicas: int, why: str, started: float
    ) -> DeployResult:
        stable_version = _annotations(stable).get(ANN_VERSION)
        uri = self.stable.uri_in(stable["spec"]["template"])
        failed = f"canary v{version} failed ({why})"
        try:
            self.deployments.delete(self.name)
            self._scale_stable(replicas)
        except DeployError as exc:
            message = f"{failed}; removing it FAILED: {exc}"
            seconds = self.stable.clock() - started
            return DeployResult(False, "", version, stable_version, False, seconds, message)
        back = f"v{stable_version}" if stable_version else "the stable version"
        message = f"{failed}; canary removed, {back} takes all traffic on {replicas} replicas"
        seconds = self.stable.clock() - started
        return DeployResult(False, uri, version, stable_version, True, seconds, message)

    def _scale_stable(self, replicas: int) -> None:
        name = self.stable.target.deployment
        for _ in range(CONFLICT_RETRIES):
            dep = self.deployments.read(name)
            if dep.get("spec", {}).get("replicas") == replicas:
                return
            ops: list[Obj] = []
            if rv := dep.get("metadata", {}).get("resourceVersion"):
                ops.append({"op": "replace", "path": "/metadata/resourceVersion", "value": rv})
            ops.append({"op": "replace", "path": "/spec/replicas", "value": replicas})
            try:
                self.deployments.patch(name, ops)
                return
            except DeployConflict:  # the controller wrote its status meanwhile: read again
                continue
        raise DeployError(f"the Deployment kept changing ({CONFLICT_RETRIES} conflicts in a row)")


def canary_deployment(
    stable: Obj, name: str, template: Obj, annotations: dict[str, str], replicas: int
) -> Obj:
    """The canary Deployment: the stable's spec (strategy, deadlines…) with `template`,
    `replicas`, and selector and pod labels on the canary track."""
    spec = copy.deepcopy(stable["spec"])
    for key in ("replicas", "selector", "template", "paused"):
        spec.pop(key, None)
    selector = copy.deepcopy(stable["spec"]["selector"])
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), TRACK: "canary"}
    template = copy.deepcopy(template)
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), TRACK: "canary"}
    labels = {**(stable.get("metadata", {}).get("labels") or {}), TRACK: "canary"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": stable["metadata"].get("namespace"),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {**spec, "replicas": replicas, "selector": selector, "template": template},
    }


def _ops(existing: Obj, body: Obj) -> list[Obj]:
    ops: list[Obj] = []
    if rv := existing.get("metadata", {}).get("resourceVersion"):
        ops.append({"op": "replace", "path": "/metadata/resourceVersion", "value": rv})
    ops += [
        {"op": "replace", "path": "/spec/template", "value": body["spec"]["template"]},
        {"op": "replace", "path": "/spec/replicas", "value": body["spec"]["replicas"]},
        {"op": "add", "path": "/metadata/annotations", "value": body["metadata"]["annotations"]},
    ]
    return ops


def _stable_replicas(stable: Obj, canary: Obj | None) -> int:
    """The stable's replica count before the split: recorded on a running canary, else now."""
    recorded = _annotations(canary).get(ANN_STABLE_REPLICAS) if canary else None
    if recorded is not None and recorded.isdigit():
        return int(recorded)
    replicas = stable.get("spec", {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def _env(template: Obj, name: str) -> str | None:
    for container in template.get("spec", {}).get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == name and env.get("value"):
                return str(env["value"])
    return None


def _annotations(dep: Obj | None) -> dict[str, str]:
    return dict(((dep or {}).get("metadata") or {}).get("annotations") or {})
