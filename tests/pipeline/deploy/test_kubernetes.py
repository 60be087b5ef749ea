"""KubernetesDeployer against kmock, through the real kubernetes client over real HTTP.

kmock stores objects and applies patches; it does not run controllers. The fixture adds the
pieces of a real cluster that a rollout needs: the API server's generation bump on a spec
change, its resourceVersion (bumped by every write; a patch that names an older one is
refused with 409 Conflict and changes nothing), and a deployment controller that writes the
Deployment's status. The controller makes
pods of any model URI containing "broken" never become available, which is how a bad model
version behaves behind a readiness probe.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import kmock
import pytest
from kubernetes import client

from ganops.pipeline.deploy import KubeTarget
from ganops.pipeline.deploy.kubernetes import (
    ANN_PREVIOUS,
    ANN_VERSION,
    KubernetesDeployer,
    rollout_state,
)
from ganops.pipeline.ports import DeployError, Served
from tests.fakes.kmock_loop import close_emulator, open_emulator, serve_kmock
from tests.fakes.slack import eventually

NS, NAME, CONTAINER = "serving", "ganops-serve", "server"
DEPLOYMENTS = kmock.resource("apps/v1/deployments")
KEY = (DEPLOYMENTS, NS, NAME)
URI_V6 = "models:/ganops-cut/6"
T = TypeVar("T")


def seed_deployment() -> dict[str, Any]:
    env = [{"name": "LOG_LEVEL", "value": "info"}, {"name": "GANOPS_MODEL_URI", "value": URI_V6}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "generation": 1,
            "resourceVersion": "100",
            "annotations": {"ganops.io/model": "cut", ANN_VERSION: "6"},
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {
                    "containers": [
                        {"name": CONTAINER, "image": "ganops-trainer:1.0", "env": env},
                        {"name": "sidecar", "image": "envoy:1.30"},
                    ]
                },
            },
        },
        "status": healthy_status(3, 1),
    }


def healthy_status(replicas: int, generation: int) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "availableReplicas": replicas,
        "readyReplicas": replicas,
        "conditions": [
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
        ],
    }


def stuck_status(replicas: int, generation: int, deadline_exceeded: bool) -> dict[str, Any]:
    reason = "ProgressDeadlineExceeded" if deadline_exceeded else "ReplicaSetUpdated"
    return {
        "observedGeneration": generation,
        "replicas": replicas + 1,
        "updatedReplicas": 1,
        "availableReplicas": replicas,
        "readyReplicas": replicas,
        "conditions": [
            {
                "type": "Progressing",
                "status": "False" if deadline_exceeded else "True",
                "reason": reason,
                "message": f'ReplicaSet "{NAME}-7f9" has timed out progressing.',
            }
        ],
    }


@dataclass
class FakeCluster:
    """kmock on a background event loop, with the API server and controller bits above."""

    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    forbidden: set[str] = field(default_factory=set)  # verbs answered with 403
    deadline_exceeded: bool = True  # stuck rollouts report ProgressDeadlineExceeded
    seed: Callable[[], dict[str, Any]] = field(default=lambda: seed_deployment())
    handler: Any = None
    server: Any = None
    url: str = ""

    def call(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def obj(self, name: str = NAME) -> Any:
        """Deployment `name` as the API server holds it; None when there is none."""

        def read() -> Any:
            key = (DEPLOYMENTS, NS, name)
            if key not in self.handler.objects or self.handler.objects[key].deleted:
                return None
            return copy.deepcopy(self.handler.objects[key].raw)

        return self.call(read)

    def history(self) -> list[Any]:
        return self.call(
            lambda: [copy.deepcopy(v.raw) if v else None for v in self.handler.objects[KEY].history]
        )

    async def start(self) -> None:
        self.handler, self.server, self.url = await open_emulator()
        self.handler.objects[KEY] = self.seed()
        self.handler[kmock.action.FETCH, DEPLOYMENTS, kmock.name(NAME)] << self._on_fetch
        self.handler[kmock.action.UPDATE, DEPLOYMENTS] << self._on_patch
        self.handler[kmock.action.CREATE, DEPLOYMENTS] << self._on_create
        self._controller = asyncio.get_running_loop().create_task(self._control())

    async def stop(self) -> None:
        self._controller.cancel()
        await close_emulator(self.handler, self.server)

    def _deny(self, verb: str) -> None:
        raise kmock.KubernetesError(
            status=403,
            reason="Forbidden",
            message=f'deployments.apps "{NAME}" is forbidden: User "system:serviceaccount:'
            f'ganops:ganops-bot" cannot {verb} resource "deployments" in API group "apps" '
            f'in the namespace "{NS}"',
        )

    def _on_fetch(self, request: Any) -> dict[str, Any]:
        if "get" in self.forbidden:
            self._deny("get")
        return dict(self.handler.objects[KEY].raw)

    def _on_create(self, request: Any) -> dict[str, Any]:
        """The API server's defaults on a new object: generation 1, a resourceVersion."""
        obj = self.handler.objects[(DEPLOYMENTS, NS, request.data["metadata"]["name"])]
        if "create" in self.forbidden:
            obj.delete()
            self._deny("create")
        obj["metadata"] = {**obj.raw["metadata"], "generation": 1, "resourceVersion": "1"}
        return dict(obj.raw)

    def _on_patch(self, request: Any) -> dict[str, Any]:
        obj = self.handler.objects[(DEPLOYMENTS, NS, request.name)]
        if "patch" in self.forbidden:
            del obj.history[-1]  # kmock applied it before asking us; a real 403 changes nothing
            self._deny("patch")
        before, after = obj.history[-2], obj.history[-1]
        version = before.raw["metadata"]["resourceVersion"]
        if after.raw["metadata"].get("resourceVersion") != version:  # optimistic concurrency
            del obj.history[-1]
            raise kmock.KubernetesError(
                status=409,
                reason="Conflict",
                message=f'Operation cannot be fulfilled on deployments.apps "{NAME}": the object '
                "has been modified; please apply your changes to the latest version and try again",
            )
        meta = {**after.raw["metadata"], "resourceVersion": str(int(version) + 1)}
        if before.raw["spec"] != after.raw["spec"]:  # the API server's generation bump
            meta["generation"] = int(meta.get("generation") or 0) + 1
        obj["metadata"] = meta
        return dict(obj.raw)

    def write_status(self, status: dict[str, Any], name: str = NAME) -> None:
        """What the controller's status update does: a write, so a new resourceVersion."""
        obj = self.handler.objects[(DEPLOYMENTS, NS, name)]
        version = str(int(obj.raw["metadata"]["resourceVersion"]) + 1)
        obj.patch({"status": status, "metadata": {"resourceVersion": version}})

    async def _control(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            for (_, _, name), obj in list(self.handler.objects.items()):
                if not obj.deleted:
                    self._reconcile(name, obj.raw)

    def _reconcile(self, name: str, dep: dict[str, Any]) -> None:
        gen = int(dep["metadata"].get("generation") or 0)
        want = int(dep["spec"]["replicas"])
        server = dep["spec"]["template"]["spec"]["containers"][0]
        uri = next(e["value"] for e in server["env"] if e["name"] == "GANOPS_MODEL_URI")
        if "broken" in uri:
            status = stuck_status(want, gen, self.deadline_exceeded)
        else:
            status = healthy_status(want, gen)
        if dep.get("status") != status:
            self.write_status(status, name)


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    with serve_kmock(FakeCluster()) as fake:
        yield fake


def make_deployer(cluster: FakeCluster, **kw: Any) -> KubernetesDeployer:
    cfg = client.Configuration()
    cfg.host = cluster.url
    target = KubeTarget(
        namespace=NS,
        deployment=NAME,
        container=kw.pop("container", CONTAINER),
        progress_deadline_s=kw.pop("deadline", 10.0),
        poll_s=0.05,
        **kw,
    )
    return KubernetesDeployer(target, client.ApiClient(cfg))


def server_container(dep: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = dep["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == CONTAINER)


def test_the_patch_lands_and_the_rollout_is_awaited(cluster: FakeCluster) -> None:
    deployer = make_deployer(cluster, image="ganops-trainer:{version}")
    assert deployer.current("cut") == "6"
    result = deployer.deploy("cut", "7", "models:/ganops-cut/7")
    assert result.ok, result.message
    assert (result.version, result.previous_version, result.rolled_back) == ("7", "6", False)
    assert result.message == "rolled out 3/3 replicas"
    dep = cluster.obj()
    server = server_container(dep)
    assert server["env"] == [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "GANOPS_MODEL_URI", "value": "models:/ganops-cut/7"},
        {"name": "GANOPS_MODEL_VERSION", "value": "7"},  # the server's metrics label
    ]
    assert server["image"] == "ganops-trainer:7"
    assert dep["spec"]["template"]["spec"]["containers"][1] == {
        "name": "sidecar",
        "image": "envoy:1.30",
    }
    assert dep["spec"]["template"]["metadata"]["annotations"][ANN_VERSION] == "7"
    assert dep["metadata"]["annotations"][ANN_VERSION] == "7"
    assert dep["metadata"]["annotations"][ANN_PREVIOUS] == "6"
    assert deployer.current("cut") == "7"
    assert deployer.current("cyclegan") is None
    [patch] = list(cluster.handler[kmock.action.UPDATE])
    assert patch.headers["Content-Type"] == "application/json-patch+json"
    assert patch.data[0] == {"op": "replace", "path": "/metadata/resourceVersion", "value": "100"}


@pytest.mark.parametrize("deadline_exceeded", [True, False])
def test_a_rollout_that_never_becomes_available_is_rolled_back(
    cluster: FakeCluster, deadline_exceeded: bool
) -> None:
    cluster.deadline_exceeded = deadline_exceeded  # False: our own deadline must catch it
    original = cluster.obj()
    deployer = make_deployer(cluster, deadline=1.5)
    result = deployer.deploy("cut", "8", "models:/ganops-cut/8-broken")
    assert not result.ok
    assert result.rolled_back
    assert result.previous_version == "6"
    assert result.model_uri == URI_V6  # what serves again
    why = "ProgressDeadlineExceeded" if deadline_exceeded else "not ready within 2 s"
    assert why in result.message
    assert "rolled back to v6 (ready)" in result.message
    dep = cluster.obj()
    assert dep["spec"]["template"] == original["spec"]["template"]
    assert dep["metadata"]["annotations"] == original["metadata"]["annotations"]
    templates = [v["spec"]["template"] for v in cluster.history() if v]
    assert any("broken" in str(t) for t in templates)  # the bad version was really applied
    assert deployer.current("cut") == "6"


class Killed(BaseException):
    """The bot process dying between its patch and the end of the rollout."""


class _Doomed(KubernetesDeployer):
    def _patch(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        super()._patch(ops)
        raise Killed  # right after the patch lands: no wait, and no rollback either


def killed_after_patch(cluster: FakeCluster, version: str, uri: str) -> None:
    cfg = client.Configuration()
    cfg.host = cluster.url
    target = KubeTarget(NS, NAME, CONTAINER, progress_deadline_s=10.0, poll_s=0.05)
    with pytest.raises(Killed):
        _Doomed(target, client.ApiClient(cfg)).deploy("cut", version, uri)


def test_served_reads_the_pod_template_and_whether_it_settled(cluster: FakeCluster) -> None:
    deployer = make_deployer(cluster)
    assert deployer.served("cut") == Served("cut", "6", URI_V6, settled=True)
    assert deployer.served("cyclegan") is None
    killed_after_patch(cluster, "8", "models:/ganops-cut/8-broken")
    # A restarted bot sees the half-done rollout: v8 in the template, and once the
    # controller has seen it, pods that never get ready.
    dep = eventually(lambda: (d := cluster.obj())["status"]["observedGeneration"] == 2 and d)
    assert dep["status"]["updatedReplicas"] == 1  # of 3: the old pods still serve
    assert deployer.served("cut") == Served("cut", "8", "models:/ganops-cut/8-broken", False)
    killed_after_patch(cluster, "9", "models:/ganops-cut/9")
    # A good version killed mid-way is finished by the controller alone.
    want = Served("cut", "9", "models:/ganops-cut/9", settled=True)
    assert eventually(lambda: deployer.served("cut") == want)


@pytest.mark.parametrize("verb", ["get", "patch"])
def test_rbac_errors_say_what_is_missing(cluster: FakeCluster, verb: str) -> None:
    cluster.forbidden.add(verb)
    before = cluster.obj()
    with pytest.raises(DeployError) as info:
        make_deployer(cluster).deploy("cut", "7", "models:/ganops-cut/7")
    message = str(info.value)
    assert message.startswith(f"RBAC: the bot may not {verb} deployments.apps")
    assert f"namespace '{NS}'" in message
    assert "403 Forbidden" in message
    assert "\n" not in message
    assert cluster.obj() == before


def test_unknown_container_and_missing_deployment(cluster: FakeCluster) -> None:
    with pytest.raises(DeployError, match=r"no container .model.*server, sidecar"):
        make_deployer(cluster, container="model").deploy("cut", "7", "u")
    cfg = client.Configuration()
    cfg.host = cluster.url
    missing = KubernetesDeployer(KubeTarget("serving", "nope", CONTAINER), client.ApiClient(cfg))
    with pytest.raises(DeployError, match="serving/nope not found"):
        missing.current("cut")


def test_unreachable_api_is_a_clear_error() -> None:
    cfg = client.Configuration()
    cfg.host = "http://127.0.0.1:9"
    cfg.retries = 0
    deployer = KubernetesDeployer(KubeTarget(NS, NAME, CONTAINER), client.ApiClient(cfg))
    with pytest.raises(DeployError, match="cannot be reached"):
        deployer.deploy("cut", "7", "u")


def test_rollout_state_reads_status_like_kubectl() -> None:
    dep = seed_deployment()
    assert rollout_state(dep, 1).done
    assert not rollout_state(dep, 2).done  # the controller has not seen the new spec
    dep["status"] = stuck_status(3, 2, deadline_exceeded=False)
    state = rollout_state(dep, 2)
    assert not state.done
    assert state.failure is None
    assert "1/3 updated" in state.summary
    assert "3 old pending termination" in state.summary
    dep["status"] = stuck_status(3, 2, deadline_exceeded=True)
    assert (rollout_state(dep, 2).failure or "").startswith("ProgressDeadlineExceeded")


class _Racing(KubernetesDeployer):
    """Runs `before_rollback` just before its rollback patch goes out (its second patch)."""

    def __init__(self, *args: Any, before_rollback: Callable[[], None], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.before_rollback = before_rollback
        self.patches = 0

    def _patch(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        self.patches += 1
        if self.patches == 2:
            self.before_rollback()
        return super()._patch(ops)


def racing(cluster: FakeCluster, before_rollback: Callable[[], None]) -> _Racing:
    cfg = client.Configuration()
    cfg.host = cluster.url
    target = KubeTarget(NS, NAME, CONTAINER, progress_deadline_s=1.5, poll_s=0.05)
    return _Racing(target, client.ApiClient(cfg), before_rollback=before_rollback)


def test_the_rollback_patch_carries_the_resource_version_it_read(cluster: FakeCluster) -> None:
    result = make_deployer(cluster, deadline=1.5).deploy("cut", "8", "models:/ganops-cut/8-broken")
    assert result.rolled_back, result.message
    first, rollback = list(cluster.handler[kmock.action.UPDATE])
    assert first.data[0] == {"op": "replace", "path": "/metadata/resourceVersion", "value": "100"}
    # Read again before the rollback: the patch and the controller's status moved it on.
    assert rollback.data[0]["path"] == "/metadata/resourceVersion"
    assert int(rollback.data[0]["value"]) > 101


def test_a_conflict_from_a_status_update_is_read_again_and_rolled_back(
    cluster: FakeCluster,
) -> None:
    """The controller writing status between our read and our patch: a 409, a re-read, the
    template is still ours, so the rollback goes ahead."""
    stuck = stuck_status(3, 2, deadline_exceeded=True)
    deployer = racing(cluster, lambda: cluster.call(lambda: cluster.write_status(stuck)))
    result = deployer.deploy("cut", "8", "models:/ganops-cut/8-broken")
    assert result.rolled_back, result.message
    assert "rolled back to v6 (ready)" in result.message
    assert server_container(cluster.obj())["env"][1]["value"] == URI_V6
    assert len(list(cluster.handler[kmock.action.UPDATE])) == 3  # ours, 409, the retry


def test_a_newer_rollout_made_meanwhile_is_not_overwritten(cluster: FakeCluster) -> None:
    """Another bot process rolls out v9 while ours failed: our rollback patch carries the
    resourceVersion it read, gets 409, re-reads, finds v9 and leaves it."""
    other = make_deployer(cluster)

    def someone_else_deploys() -> None:
        assert other.deploy("cut", "9", "models:/ganops-cut/9").ok

    deployer = racing(cluster, someone_else_deploys)
    result = deployer.deploy("cut", "8", "models:/ganops-cut/8-broken")
    assert not result.ok
    assert not result.rolled_back
    assert "not rolled back: the Deployment was changed by someone else" in result.message
    assert "now rolls out v9" in result.message
    assert deployer.served("cut") == Served("cut", "9", "models:/ganops-cut/9", settled=True)
    templates = [v["spec"]["template"] for v in cluster.history() if v]
    assert "ganops-cut/9" in str(templates[-1])  # nothing restored v6 over it
