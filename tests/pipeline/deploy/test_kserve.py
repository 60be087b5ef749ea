"""KServeDeployer against kmock, through the real kubernetes client over real HTTP; what it sends
is read back through the `kserve` package's own models.

kmock stores objects and applies JSON patches; it runs no controllers. The fixture adds what a
rollout needs from a cluster: the API server's generation and resourceVersion, and a KServe
controller that writes the InferenceService's status. A model URI containing "broken" makes a
revision that never becomes ready (KServe: LatestDeploymentReady False, RevisionFailed) while
the last ready revision keeps serving.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import kmock
import pytest
from kserve import V1beta1InferenceService
from kubernetes import client

from ganops.pipeline.deploy import KServeTarget, make_deployer
from ganops.pipeline.deploy.kserve import KServeDeployer
from ganops.pipeline.deploy.kserve_spec import rollout_state
from ganops.pipeline.ports import DeployError, Served
from tests.fakes.kmock_loop import close_emulator, open_emulator, serve_kmock
from tests.fakes.kserve_models import strict
from tests.fakes.slack import eventually

NS, NAME = "serving", "stylizer"
ISVCS = kmock.resource("serving.kserve.io/v1beta1/inferenceservices")
KEY = (ISVCS, NS, NAME)
T = TypeVar("T")


@dataclass
class FakeKServe:
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    forbidden: set[str] = field(default_factory=set)
    handler: Any = None
    server: Any = None
    url: str = ""
    _good: str | None = None  # the last revision that became ready
    rolled_out: str | None = None  # the last revision that took 100% of the traffic
    revisions: list[tuple[str, Any]] = field(default_factory=list)  # (name, pod spec)

    def call(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def obj(self) -> Any:
        return self.call(
            lambda: (
                copy.deepcopy(self.handler.objects[KEY].raw)
                if KEY in self.handler.objects
                else None
            )
        )

    def seed(self, isvc: dict[str, Any]) -> None:
        self.call(lambda: self.handler.objects.__setitem__(KEY, isvc))

    async def start(self) -> None:
        self.handler, self.server, self.url = await open_emulator()
        self.handler[kmock.action.CREATE, ISVCS] << self._on_write
        self.handler[kmock.action.UPDATE, ISVCS, kmock.name(NAME)] << self._on_write
        self.handler[kmock.action.FETCH, ISVCS, kmock.name(NAME)] << self._on_fetch
        self._controller = asyncio.get_running_loop().create_task(self._control())

    async def stop(self) -> None:
        self._controller.cancel()
        await close_emulator(self.handler, self.server)

    def _on_fetch(self, request: Any) -> Any:
        if "get" in self.forbidden:
            raise kmock.KubernetesError(status=403, reason="Forbidden", message="no get")
        if KEY not in self.handler.objects:
            raise kmock.KubernetesError(status=404, reason="NotFound", message="not found")
        return dict(self.handler.objects[KEY].raw)

    def _on_write(self, request: Any) -> dict[str, Any]:
        """The API server's part: generation bumps on a spec change, resourceVersion on any."""
        obj = self.handler.objects[KEY]
        history = [v for v in obj.history if v]
        meta = dict(obj.raw["metadata"])
        generation = int(meta.get("generation") or 0)
        if len(history) < 2 or history[-2].raw.get("spec") != history[-1].raw.get("spec"):
            generation += 1
        rv = int(meta.get("resourceVersion") or 0) + 1
        obj["metadata"] = {**meta, "generation": generation, "resourceVersion": str(rv)}
        return dict(obj.raw)

    async def _control(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            if KEY in self.handler.objects and not self.handler.objects[KEY].deleted:
                self._reconcile(self.handler.objects[KEY])

    def _reconcile(self, obj: Any) -> None:
        """KServe over Knative: a new revision when the predictor's pods would change (not
        on a canaryTrafficPercent change); with canaryTrafficPercent, the newest ready
        revision takes that share and the last one rolled out at 100% the rest."""
        gen = int(obj.raw["metadata"].get("generation") or 0)
        predictor = obj.raw["spec"]["predictor"]
        pods = {k: v for k, v in predictor.items() if k != "canaryTrafficPercent"}
        if not self.revisions or self.revisions[-1][1] != pods:
            self.revisions.append((f"{NAME}-predictor-{len(self.revisions) + 1:05d}", pods))
        created = self.revisions[-1][0]
        env = predictor["containers"][0].get("env") or []
        broken = any("broken" in str(e.get("value")) for e in env)
        if not broken:
            self._good = created
        percent = predictor.get("canaryTrafficPercent")
        if percent is None or self.rolled_out in (None, self._good):
            self.rolled_out = self._good
            traffic = [{"revisionName": self._good, "percent": 100, "latestRevision": True}]
        else:
            traffic = [
                {"revisionName": self._good, "percent": percent, "latestRevision": True},
                {"revisionName": self.rolled_out, "percent": 100 - percent,
                 "latestRevision": False},
            ]  # fmt: skip
        status = {
            "observedGeneration": gen,
            "components": {
                "predictor": {
                    "latestCreatedRevision": created,
                    "latestReadyRevision": self._good,
                    "latestRolledoutRevision": self.rolled_out,
                    "traffic": traffic,
                }
            },
            "conditions": [
                {"type": "LatestDeploymentReady", "status": "False" if broken else "True",
                 **({"reason": "RevisionFailed", "message": "probe failed"} if broken else {})},
                {"type": "Ready", "status": "True" if self._good else "False"},
            ],
        }  # fmt: skip
        if obj.raw.get("status") != status:
            obj["status"] = status

    def traffic(self) -> dict[str, int]:
        """Revision -> percent, as the controller last routed it."""
        routes = self.obj()["status"]["components"]["predictor"]["traffic"]
        return {t["revisionName"]: t["percent"] for t in routes}


@pytest.fixture
def kserve() -> Iterator[FakeKServe]:
    with serve_kmock(FakeKServe()) as fake:
        yield fake


def target(**kw: Any) -> KServeTarget:
    return KServeTarget(
        namespace=NS,
        name=NAME,
        image="registry/ganops-trainer:{version}",
        mlflow_uri="http://mlflow.mlflow:5000",
        progress_deadline_s=kw.pop("deadline", 10.0),
        poll_s=0.05,
        **kw,
    )


def deployer(kserve: FakeKServe, locate: Any = None, **kw: Any) -> KServeDeployer:
    cfg = client.Configuration()
    cfg.host = kserve.url
    return KServeDeployer(target(**kw), client.ApiClient(cfg), locate=locate)


def as_model(doc: dict[str, Any]) -> V1beta1InferenceService:
    """The object as KServe's models read it; a misspelled field name fails here. (The status
    is the fake controller's, not the deployer's.)"""
    return strict({k: v for k, v in doc.items() if k != "status"}, "V1beta1InferenceService")


def env_of(isvc: V1beta1InferenceService) -> dict[str, str]:
    return {e.name: e.value for e in isvc.spec.predictor.containers[0].env}


def test_the_first_deploy_creates_the_inference_service(kserve: FakeKServe) -> None:
    d = deployer(kserve, mode="RawDeployment")
    assert d.current("cut") is None
    assert d.served("cut") is None
    result = d.deploy("cut", "7", "models:/ganops-cut/7")
    assert result.ok, result.message
    assert (result.version, result.previous_version, result.rolled_back) == ("7", None, False)
    isvc = as_model(kserve.obj())
    assert (isvc.api_version, isvc.kind) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert (isvc.metadata.name, isvc.metadata.namespace) == (NAME, NS)
    assert isvc.metadata.annotations["serving.kserve.io/deploymentMode"] == "RawDeployment"
    predictor = isvc.spec.predictor
    assert predictor.min_replicas == 1
    assert predictor.canary_traffic_percent is None
    (container,) = predictor.containers
    assert container.name == "kserve-container"
    assert container.image == "registry/ganops-trainer:7"
    assert container.args == ["serve", "--model-name", NAME, "--host", "0.0.0.0", "--port", "8080"]
    assert container.ports[0].container_port == 8080
    assert container.readiness_probe.http_get.path == f"/v2/models/{NAME}/ready"
    assert env_of(isvc) == {
        "GANOPS_MODEL_VERSION": "7",
        "GANOPS_MODEL_URI": "models:/ganops-cut/7",
        "MLFLOW_TRACKING_URI": "http://mlflow.mlflow:5000",
    }
    assert d.current("cut") == "7"
    assert d.served("cut") == Served("cut", "7", "models:/ganops-cut/7", settled=True)
    assert d.served("cyclegan") is None


def test_the_model_check_refuses_a_misspelled_field() -> None:
    with pytest.raises(AssertionError, match="minReplica"):
        strict({"spec": {"predictor": {"minReplica": 1}}}, "V1beta1InferenceService")
    with pytest.raises(AssertionError, match="storageURI"):
        strict({"spec": {"predictor": {"containers": [{"storageURI": "s3://x"}]}}},
               "V1beta1InferenceService")  # fmt: skip


def test_a_new_version_is_patched_in_with_a_resource_version_test(kserve: FakeKServe) -> None:
    d = deployer(kserve, locate=lambda uri: f"s3://mlflow/1/run{uri[-1]}/artifacts/model")
    assert d.deploy("cut", "6", "models:/ganops-cut/6").ok

    # What an operator added to the predictor stays: resources on our container, a sidecar.
    def customise() -> None:
        raw = kserve.handler.objects[KEY].raw
        predictor = copy.deepcopy(raw["spec"]["predictor"])
        predictor["containers"][0]["resources"] = {"limits": {"cpu": "2"}}
        predictor["containers"].append({"name": "sidecar", "image": "envoy:1.30"})
        kserve.handler.objects[KEY]["spec"] = {**raw["spec"], "predictor": predictor}

    kserve.call(customise)
    before = kserve.obj()
    result = d.deploy("cut", "7", "models:/ganops-cut/7")
    assert result.ok, result.message
    assert result.previous_version == "6"
    isvc = as_model(kserve.obj())
    assert env_of(isvc) == {
        "GANOPS_MODEL_VERSION": "7",
        "STORAGE_URI": "s3://mlflow/1/run7/artifacts/model",
        "GANOPS_MODEL_URI": "/mnt/models/extra_files",
    }
    ours, sidecar = isvc.spec.predictor.containers
    assert ours.image == "registry/ganops-trainer:7"
    assert ours.resources.limits == {"cpu": "2"}
    assert (sidecar.name, sidecar.image) == ("sidecar", "envoy:1.30")
    assert isvc.spec.predictor.annotations["ganops.io/model-version"] == "7"
    assert isvc.metadata.annotations["ganops.io/previous-version"] == "6"
    patch = list(kserve.handler[kmock.action.UPDATE])[-1]
    assert patch.headers["Content-Type"] == "application/json-patch+json"
    rv = before["metadata"]["resourceVersion"]
    assert patch.data[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": rv}


def test_a_revision_that_never_gets_ready_is_rolled_back(kserve: FakeKServe) -> None:
    d = deployer(kserve)
    assert d.deploy("cut", "6", "models:/ganops-cut/6").ok
    good = kserve.obj()
    result = d.deploy("cut", "8", "models:/ganops-cut/8-broken")
    assert not result.ok
    assert result.rolled_back
    assert "RevisionFailed" in result.message
    assert "rolled back to v6 (ready)" in result.message
    assert result.model_uri == "models:/ganops-cut/6"
    now = kserve.obj()
    assert now["spec"]["predictor"] == good["spec"]["predictor"]
    assert now["metadata"]["annotations"] == good["metadata"]["annotations"]
    assert d.current("cut") == "6"


def test_a_concurrent_change_is_refused_not_overwritten(kserve: FakeKServe) -> None:
    d = deployer(kserve)
    assert d.deploy("cut", "6", "models:/ganops-cut/6").ok

    class Raced(KServeDeployer):
        def _read(self) -> Any:
            obj = super()._read()
            if obj is not None:  # someone else wrote in between: our copy is stale
                obj["metadata"]["resourceVersion"] = "0"
            return obj

    cfg = client.Configuration()
    cfg.host = kserve.url
    before = kserve.obj()
    with pytest.raises(DeployError):
        Raced(target(), client.ApiClient(cfg)).deploy("cut", "7", "models:/ganops-cut/7")
    assert kserve.obj()["spec"] == before["spec"]


def test_served_after_a_bot_killed_mid_rollout(kserve: FakeKServe) -> None:
    d = deployer(kserve)
    assert d.deploy("cut", "6", "models:/ganops-cut/6").ok

    class Killed(BaseException):
        pass

    class Doomed(KServeDeployer):
        def _patch(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
            super()._patch(ops)
            raise Killed

    cfg = client.Configuration()
    cfg.host = kserve.url
    with pytest.raises(Killed):
        Doomed(target(), client.ApiClient(cfg)).deploy("cut", "8", "models:/ganops-cut/8-broken")
    want = Served("cut", "8", "models:/ganops-cut/8-broken", settled=False)
    assert eventually(lambda: kserve.obj()["status"]["observedGeneration"] == 2)
    assert d.served("cut") == want


def test_rbac_and_unreachable_api_are_clear_errors(kserve: FakeKServe) -> None:
    kserve.forbidden.add("get")
    with pytest.raises(DeployError, match="RBAC: the bot may not get inferenceservices"):
        deployer(kserve).deploy("cut", "7", "models:/ganops-cut/7")
    cfg = client.Configuration()
    cfg.host = "http://127.0.0.1:9"
    cfg.retries = 0
    with pytest.raises(DeployError, match="cannot be reached"):
        KServeDeployer(target(), client.ApiClient(cfg)).current("cut")


def test_rollout_state_and_the_factory() -> None:
    isvc: dict[str, Any] = {"status": {"observedGeneration": 1, "conditions": []}}
    assert not rollout_state(isvc, 2).done
    assert not rollout_state(isvc, 1).done  # not Ready yet
    isvc["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert rollout_state(isvc, 1).done
    isvc["status"]["components"] = {
        "predictor": {"latestCreatedRevision": "r2", "latestReadyRevision": "r1"}
    }
    assert not rollout_state(isvc, 1).done  # the old revision still serves
    made = make_deployer(Path("/nonexistent"), "http://127.0.0.1:5000", target())
    assert isinstance(made, KServeDeployer)
