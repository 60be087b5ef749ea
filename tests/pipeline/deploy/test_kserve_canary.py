"""The KServe canary (`canaryTrafficPercent`) against kmock, through the real kubernetes client;
the InferenceService read back through the `kserve` package's models. The fake controller
(test_kserve.FakeKServe) makes Knative revisions and routes the traffic as KServe does."""

from __future__ import annotations

import json
from typing import Any

import kmock
import pytest

from ganops.pipeline.deploy.kserve import KServeDeployer
from ganops.pipeline.ports import CanaryServed, DeployError, Served
from tests.pipeline.deploy.test_kserve import (
    FakeKServe,
    as_model,
    deployer,
    env_of,
    kserve,
)

__all__ = ["kserve"]  # the fixture

URI_V6, URI_V7 = "models:/ganops-cut/6", "models:/ganops-cut/7"


def patches(fake: FakeKServe) -> list[Any]:
    return [r.data for r in fake.handler[kmock.action.UPDATE]]


def stable_v6(fake: FakeKServe) -> dict[str, Any]:
    assert deployer(fake).deploy("cut", "6", URI_V6).ok
    obj: dict[str, Any] = fake.obj()
    return obj


def test_a_canary_goes_10_then_50_then_is_promoted(kserve: FakeKServe) -> None:
    stable_v6(kserve)
    [v6] = kserve.traffic()
    result = deployer(kserve).set_canary("cut", "7", URI_V7, 10)
    assert result.ok, result.message
    assert (result.version, result.previous_version, result.model_uri) == ("7", "6", URI_V7)
    isvc = as_model(kserve.obj())
    assert isvc.spec.predictor.canary_traffic_percent == 10
    assert env_of(isvc)["GANOPS_MODEL_VERSION"] == "7"
    assert isvc.spec.predictor.containers[0].image == "registry/ganops-trainer:7"
    notes = isvc.metadata.annotations
    assert notes["ganops.io/canary-version"] == "7"
    assert notes["ganops.io/model-version"] == "6"  # the stable, still
    v7 = kserve.obj()["status"]["components"]["predictor"]["latestReadyRevision"]
    assert kserve.traffic() == {v7: 10, v6: 90}

    # A restarted bot reads it back; the stable is what `served` reports meanwhile.
    assert deployer(kserve).canary("cut") == CanaryServed("cut", "7", URI_V7, 10, "6")
    assert deployer(kserve).canary("cyclegan") is None
    assert deployer(kserve).served("cut") == Served("cut", "6", URI_V6, settled=True)
    assert deployer(kserve).current("cut") == "6"

    result = deployer(kserve).set_canary("cut", "7", URI_V7, 50)
    assert result.ok, result.message
    assert patches(kserve)[-1][1:] == [
        {"op": "replace", "path": "/spec/predictor/canaryTrafficPercent", "value": 50}
    ]  # the percent only: no new revision
    assert kserve.traffic() == {v7: 50, v6: 50}
    assert deployer(kserve).canary("cut") == CanaryServed("cut", "7", URI_V7, 50, "6")

    result = deployer(kserve).set_canary("cut", "7", URI_V7, 100)
    assert result.ok, result.message
    assert (result.version, result.previous_version) == ("7", "6")
    isvc = as_model(kserve.obj())
    assert isvc.spec.predictor.canary_traffic_percent is None
    assert "canaryTrafficPercent" not in kserve.obj()["spec"]["predictor"]
    notes = isvc.metadata.annotations
    assert (notes["ganops.io/model-version"], notes["ganops.io/previous-version"]) == ("7", "6")
    assert not [k for k in notes if k.startswith("ganops.io/canary") or "stable" in k]
    assert kserve.traffic() == {v7: 100}  # the canary's revision itself: nothing restarted
    assert deployer(kserve).canary("cut") is None
    assert deployer(kserve).served("cut") == Served("cut", "7", URI_V7, settled=True)


def test_abort_pins_the_stable_then_restores_its_predictor(kserve: FakeKServe) -> None:
    good = stable_v6(kserve)
    assert deployer(kserve).set_canary("cut", "7", URI_V7, 50).ok
    result = deployer(kserve).abort_canary("cut")  # a new deployer: a restarted bot
    assert result.ok, result.message
    assert (result.version, result.model_uri, result.rolled_back) == ("6", URI_V6, True)
    assert result.message == "canary v7 removed; v6 takes all traffic"
    pin, unpin = patches(kserve)[-2:]
    assert pin[1]["value"]["canaryTrafficPercent"] == 0  # the traffic off the canary at once
    assert {"name": "GANOPS_MODEL_VERSION", "value": "6"} in pin[1]["value"]["containers"][0]["env"]
    assert unpin[1] == {"op": "remove", "path": "/spec/predictor/canaryTrafficPercent"}
    now = kserve.obj()
    assert now["spec"]["predictor"] == good["spec"]["predictor"]
    assert now["metadata"]["annotations"] == good["metadata"]["annotations"]
    as_model(now)
    assert list(kserve.traffic().values()) == [100]
    assert deployer(kserve).canary("cut") is None
    again = deployer(kserve).abort_canary("cut")
    assert (again.ok, again.rolled_back, again.message) == (True, False, "no canary running")


def test_a_canary_revision_that_never_gets_ready_is_removed(kserve: FakeKServe) -> None:
    good = stable_v6(kserve)
    result = deployer(kserve).set_canary("cut", "8", "models:/ganops-cut/8-broken", 10)
    assert not result.ok
    assert result.rolled_back
    assert "canary v8 failed (LatestDeploymentReady: RevisionFailed" in result.message
    assert result.message.endswith("canary v8 removed; v6 takes all traffic")
    assert result.model_uri == URI_V6
    assert any("8-broken" in json.dumps(p) for p in patches(kserve))  # it really was applied
    now = kserve.obj()
    assert now["spec"]["predictor"] == good["spec"]["predictor"]
    assert now["metadata"]["annotations"] == good["metadata"]["annotations"]
    assert deployer(kserve).canary("cut") is None


def test_raw_deployment_refuses_a_split_and_names_the_settings(kserve: FakeKServe) -> None:
    raw = deployer(kserve, mode="RawDeployment")
    assert raw.deploy("cut", "6", URI_V6).ok
    before = kserve.obj()
    with pytest.raises(DeployError) as info:
        raw.set_canary("cut", "7", URI_V7, 10)
    assert "RawDeployment mode has no traffic split" in str(info.value)
    assert "GANOPS_KSERVE_MODE=Serverless" in str(info.value)
    assert "GANOPS_CANARY_STEPS=100" in str(info.value)
    assert kserve.obj()["spec"] == before["spec"]
    assert raw.canary("cut") is None
    assert raw.abort_canary("cut").message == "no canary running"
    result = raw.set_canary("cut", "7", URI_V7, 100)  # straight to 100: a plain deploy
    assert result.ok, result.message
    assert raw.served("cut") == Served("cut", "7", URI_V7, settled=True)


def test_no_canary_without_a_stable_version_and_percent_checked(kserve: FakeKServe) -> None:
    d: KServeDeployer = deployer(kserve)
    with pytest.raises(DeployError, match="does not exist yet"):
        d.set_canary("cut", "7", URI_V7, 10)
    assert kserve.obj() is None
    for bad in (0, 101):
        with pytest.raises(DeployError, match=r"1\.\.100 percent"):
            d.set_canary("cut", "7", URI_V7, bad)


def test_a_deploy_during_a_canary_ends_it(kserve: FakeKServe) -> None:
    stable_v6(kserve)
    assert deployer(kserve).set_canary("cut", "7", URI_V7, 10).ok
    result = deployer(kserve).deploy("cut", "5", "models:/ganops-cut/5")
    assert result.ok, result.message
    assert result.previous_version == "6"
    isvc = as_model(kserve.obj())
    assert isvc.spec.predictor.canary_traffic_percent is None
    assert env_of(isvc)["GANOPS_MODEL_VERSION"] == "5"
    assert "ganops.io/canary-version" not in isvc.metadata.annotations
    assert deployer(kserve).canary("cut") is None
    assert list(kserve.traffic().values()) == [100]


def test_an_abort_cut_short_is_finished_by_the_next_abort(kserve: FakeKServe) -> None:
    """The bot killed between the pin and its lifting: the canary is still recorded, at 0%;
    a new canary step then starts it afresh, and an abort finishes the job."""
    good = stable_v6(kserve)
    assert deployer(kserve).set_canary("cut", "7", URI_V7, 10).ok

    class Killed(BaseException):
        pass

    class Doomed(KServeDeployer):
        def _patch(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
            if any(op["op"] == "remove" for op in ops):
                raise Killed  # before the pin is lifted
            return super()._patch(ops)

    with pytest.raises(Killed):
        Doomed(deployer(kserve).target, deployer(kserve)._client()).abort_canary("cut")
    assert deployer(kserve).canary("cut") == CanaryServed("cut", "7", URI_V7, 0, "6")
    assert env_of(as_model(kserve.obj()))["GANOPS_MODEL_VERSION"] == "6"  # the stable's back
    result = deployer(kserve).set_canary("cut", "7", URI_V7, 10)  # the predictor is v7 again
    assert result.ok, result.message
    assert env_of(as_model(kserve.obj()))["GANOPS_MODEL_VERSION"] == "7"
    assert deployer(kserve).abort_canary("cut").ok
    assert kserve.obj()["spec"]["predictor"] == good["spec"]["predictor"]
    assert kserve.obj()["metadata"]["annotations"] == good["metadata"]["annotations"]
