"""The KServe canary, Serverless mode: KServe's own `canaryTrafficPercent`.

Setting the predictor to the new version with `canaryTrafficPercent: p` makes a new Knative
revision that takes p% of the traffic once ready, while the last revision rolled out at 100%
(the stable one) takes the rest; moving p patches only that field (no new revision);
promoting removes it, so the newest revision takes everything. A revision that never gets
ready is given no traffic by KServe; it is then removed as an abort removes a canary, the
way KServe documents a rollback: the traffic is pinned to the stable revision
(`canaryTrafficPercent: 0`) in the same patch that puts the stable predictor back, and once
that (identical) revision is ready the pin is lifted.

The InferenceService's own annotations keep the stable version (`ganops.io/model-version`,
so `current()` and `served()` still name it) and add the canary's version and URI and the
stable predictor as it was, so a restarted bot can read the canary back and abort it.

RawDeployment mode has no revisions, so no traffic split: a canary there is refused (the
KServe predictor is one Deployment that KServe owns; a second one beside it, as the plain
target does, would be KServe's to delete). Set GANOPS_KSERVE_MODE=Serverless, or
GANOPS_CANARY_STEPS=100 to deploy outright. Promoting (100) works in both modes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Protocol

from ganops.pipeline.deploy.kserve_spec import ANN_URI, ANN_VERSION, Obj, Rollout
from ganops.pipeline.deploy.target import KServeTarget
from ganops.pipeline.ports import CanaryServed, DeployError, DeployResult

ANN_CANARY_VERSION = "ganops.io/canary-version"
ANN_CANARY_URI = "ganops.io/canary-uri"
ANN_STABLE_PREDICTOR = "ganops.io/stable-predictor"  # JSON: the predictor to go back to
CANARY_ANNOTATIONS = frozenset({ANN_CANARY_VERSION, ANN_CANARY_URI, ANN_STABLE_PREDICTOR})
PERCENT = "canaryTrafficPercent"


class Service(Protocol):
    """What the canary needs of the InferenceService's deployer."""

    target: KServeTarget
    clock: Callable[[], float]

    def deploy(self, model: str, version: str, model_uri: str) -> DeployResult: ...

    def _read(self) -> Obj | None: ...

    def _patch(self, ops: list[Obj]) -> Obj: ...

    def _wait(self, generation: int, started: float) -> Rollout: ...

    def _predictor_for(self, before: Obj, model: str, version: str, model_uri: str) -> Obj: ...


class KServeCanary:
    def __init__(self, service: Service) -> None:
        self.service = service

    def set(self, model: str, version: str, model_uri: str, percent: int) -> DeployResult:
        if not 1 <= percent <= 100:
            raise DeployError(f"a canary takes 1..100 percent of the traffic, not {percent}")
        if percent == 100:  # the predictor is the canary's already: only the percent goes
            return self.service.deploy(model, version, model_uri)
        mode = self.service.target.mode
        if mode != "Serverless":
            raise DeployError(
                f"KServe's {mode} mode has no traffic split, so no canary: set "
                "GANOPS_KSERVE_MODE=Serverless, or GANOPS_CANARY_STEPS=100 to deploy outright"
            )
        started = self.service.clock()
        before = self.service._read()
        if before is None:
            t = self.service.target
            raise DeployError(
                f"inferenceservice {t.namespace}/{t.name} does not exist yet: a canary needs a "
                "stable version beside it; deploy the first version outright"
            )
        notes = _annotations(before)
        predictor = before["spec"]["predictor"]
        serving = (predictor.get("annotations") or {}).get(ANN_VERSION)
        if notes.get(ANN_CANARY_VERSION) == version == serving:  # the next step: the percent
            ops = [_test(before), _op("replace", f"/spec/predictor/{PERCENT}", percent)]
        else:  # a new canary, or another version's replaced: the stable stays what it was
            stable = notes.get(ANN_STABLE_PREDICTOR) or json.dumps(predictor, sort_keys=True)
            new = self.service._predictor_for(before, model, version, model_uri)
            new[PERCENT] = percent
            notes = {
                **notes,
                ANN_CANARY_VERSION: version,
                ANN_CANARY_URI: model_uri,
                ANN_STABLE_PREDICTOR: stable,
            }
            ops = [
                _test(before),
                _op("replace", "/spec/predictor", new),
                _op("add", "/metadata/annotations", notes),
            ]
        patched = self.service._patch(ops)
        rollout = self.service._wait(int(patched["metadata"].get("generation") or 0), started)
        stable_version = notes.get(ANN_VERSION)
        if not rollout.done:
            deadline = self.service.target.progress_deadline_s
            why = rollout.failure or f"not ready within {deadline:.0f} s"
            removed = self.abort(model)
            seconds = self.service.clock() - started
            message = f"canary v{version} failed ({why}); {removed.message}"
            uri = removed.model_uri if removed.ok else ""
            return DeployResult(False, uri, version, stable_version, removed.ok, seconds, message)
        seconds = self.service.clock() - started
        message = f"canary v{version} takes {percent}% ({rollout.summary})"
        return DeployResult(True, model_uri, version, stable_version, False, seconds, message)

    def abort(self, model: str) -> DeployResult:
        started = self.service.clock()
        before = self.service._read()
        notes = _annotations(before)
        stable_version = notes.get(ANN_VERSION, "")
        stable_uri = notes.get(ANN_URI, "")
        if before is None or ANN_CANARY_VERSION not in notes:
            seconds = self.service.clock() - started
            return DeployResult(
                True, stable_uri, stable_version, None, False, seconds, "no canary running"
            )
        gone = notes[ANN_CANARY_VERSION]
        recorded = notes.get(ANN_STABLE_PREDICTOR)
        stable = json.loads(recorded) if recorded else dict(before["spec"]["predictor"])
        # One patch pins all traffic on the stable revision and puts its predictor back (a new,
        # identical revision that takes no traffic until it is ready); a second lifts the pin.
        pinned = self.service._patch(
            [_test(before), _op("replace", "/spec/predictor", {**stable, PERCENT: 0})]
        )
        restored = self.service._wait(int(pinned["metadata"].get("generation") or 0), started)
        if not restored.done:
            seconds = self.service.clock() - started
            message = (
                f"canary v{gone} taken off traffic (pinned to v{stable_version}), but the stable "
                f"predictor is not back: {restored.failure or restored.summary}"
            )
            return DeployResult(False, stable_uri, stable_version, None, True, seconds, message)
        current = self.service._read() or before
        rest = {k: v for k, v in _annotations(current).items() if k not in CANARY_ANNOTATIONS}
        unpinned = self.service._patch(
            [
                _test(current),
                _op("remove", f"/spec/predictor/{PERCENT}"),
                _op("replace", "/metadata/annotations", rest),
            ]
        )
        self.service._wait(int(unpinned["metadata"].get("generation") or 0), self.service.clock())
        seconds = self.service.clock() - started
        message = f"canary v{gone} removed; v{stable_version} takes all traffic"
        return DeployResult(True, stable_uri, stable_version, None, True, seconds, message)

    def read(self, model: str) -> CanaryServed | None:
        isvc = self.service._read()
        notes = _annotations(isvc)
        if isvc is None or ANN_CANARY_VERSION not in notes:
            return None
        if notes.get("ganops.io/model") not in (None, model):
            return None
        percent = (isvc.get("spec", {}).get("predictor") or {}).get(PERCENT)
        if percent is None:
            return None
        return CanaryServed(
            model,
            notes[ANN_CANARY_VERSION],
            notes.get(ANN_CANARY_URI, ""),
            int(percent),  # 0: an abort that did not finish (the stable takes all)
            notes.get(ANN_VERSION),
        )


def _test(isvc: Obj) -> Obj:
    """The patch applies only to the InferenceService as it was read (else 422)."""
    return _op("test", "/metadata/resourceVersion", isvc["metadata"]["resourceVersion"])


def _op(op: str, path: str, value: object = None) -> Obj:
    return {"op": op, "path": path} if op == "remove" else {"op": op, "path": path, "value": value}


def _annotations(isvc: Obj | None) -> dict[str, str]:
    return dict(((isvc or {}).get("metadata") or {}).get("annotations") or {})
