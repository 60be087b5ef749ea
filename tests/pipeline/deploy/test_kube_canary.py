"""The plain-Deployment canary against kmock, through the real kubernetes client over HTTP.

The stable Deployment is the shipped one (manifests/serving/deployment.yaml), so the labels
and selectors checked here are the ones an install runs with; the Service selector is the
shipped one too. The fake cluster (test_kubernetes.FakeCluster) adds the API server's
generation and resourceVersion and a deployment controller; a model URI containing "broken"
makes pods that never get ready.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from kubernetes import client

from ganops.pipeline.deploy import KubeTarget
from ganops.pipeline.deploy.kube_canary import split
from ganops.pipeline.deploy.kubernetes import KubernetesDeployer
from ganops.pipeline.ports import CanaryServed, DeployError, Served
from tests.fakes.kmock_loop import serve_kmock
from tests.pipeline.deploy.test_kubernetes import (
    CONTAINER,
    NAME,
    NS,
    URI_V6,
    FakeCluster,
    healthy_status,
    seed_deployment,
)

SERVING = Path(__file__).resolve().parents[3] / "manifests" / "serving"
CANARY = f"{NAME}-canary"
URI_V7 = "models:/ganops-cut/7"
TRACK = "ganops.io/track"


def shipped_deployment(replicas: int = 4) -> dict[str, Any]:
    """manifests/serving/deployment.yaml as the API server would hold it, serving v6."""
    dep: dict[str, Any] = yaml.safe_load((SERVING / "deployment.yaml").read_text())
    dep["metadata"].update(
        name=NAME,
        namespace=NS,
        generation=1,
        resourceVersion="100",
        annotations={"ganops.io/model": "cut", "ganops.io/model-version": "6"},
    )
    dep["spec"]["replicas"] = replicas
    [server] = dep["spec"]["template"]["spec"]["containers"]
    server["env"] = [{**e, "value": URI_V6} if e["name"] == "GANOPS_MODEL_URI" else e
                     for e in server["env"]]  # fmt: skip
    dep["status"] = healthy_status(replicas, 1)
    return dep


def service_selector() -> dict[str, str]:
    selector: dict[str, str] = yaml.safe_load((SERVING / "service.yaml").read_text())["spec"][
        "selector"
    ]
    return selector


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    with serve_kmock(FakeCluster(seed=shipped_deployment)) as fake:
        yield fake


def deployer(cluster: FakeCluster, deadline: float = 10.0) -> KubernetesDeployer:
    """A new deployer object each call: what a restarted bot builds."""
    cfg = client.Configuration()
    cfg.host = cluster.url
    target = KubeTarget(
        NS, NAME, CONTAINER, progress_deadline_s=deadline, poll_s=0.05, image="trainer:{version}"
    )
    return KubernetesDeployer(target, client.ApiClient(cfg))


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def env(dep: dict[str, Any]) -> dict[str, str]:
    [server] = dep["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in server["env"]}


def pod_labels(dep: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = dep["spec"]["template"]["metadata"]["labels"]
    return labels


def creates(cluster: FakeCluster) -> int:
    return len(list(cluster.handler[kmock.action.CREATE]))


@pytest.mark.parametrize(
    ("replicas", "percent", "want"),
    [
        (4, 10, (1, 3)),
        (4, 50, (2, 2)),
        (10, 10, (1, 9)),
        (10, 90, (9, 1)),
        (3, 50, (1, 2)),  # 33% and 67% are as near: the smaller canary
        (3, 60, (2, 1)),
        (1, 10, (1, 1)),  # one pod each at least
        (2, 99, (1, 1)),
    ],
)
def test_the_split_is_the_nearest_whole_pods(
    replicas: int, percent: int, want: tuple[int, int]
) -> None:
    assert split(replicas, percent) == want


def test_a_canary_goes_10_then_50_then_is_promoted(cluster: FakeCluster) -> None:
    stable_template = cluster.obj()["spec"]["template"]
    result = deployer(cluster).set_canary("cut", "7", URI_V7, 10)
    assert result.ok, result.message
    assert (result.version, result.previous_version, result.model_uri) == ("7", "6", URI_V7)
    assert "1 of 4 pods (25%)" in result.message
    stable, canary = cluster.obj(), cluster.obj(CANARY)
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == (3, 1)
    assert stable["spec"]["template"] == stable_template  # the stable pods are untouched
    # Disjoint selectors, and the shipped Service reaches both tracks' pods.
    assert pod_labels(canary)[TRACK] == "canary"
    assert not selects(stable["spec"]["selector"]["matchLabels"], pod_labels(canary))
    assert not selects(canary["spec"]["selector"]["matchLabels"], pod_labels(stable))
    assert selects(service_selector(), pod_labels(stable))
    assert selects(service_selector(), pod_labels(canary))
    assert env(canary)["GANOPS_MODEL_URI"] == URI_V7
    assert env(canary)["GANOPS_MODEL_VERSION"] == "7"
    assert env(canary)["MLFLOW_TRACKING_URI"] == env(stable)["MLFLOW_TRACKING_URI"]
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == "trainer:7"
    assert canary["spec"]["progressDeadlineSeconds"] == stable["spec"]["progressDeadlineSeconds"]
    notes = canary["metadata"]["annotations"]
    assert notes["ganops.io/canary-percent"] == "10"
    assert notes["ganops.io/canary-share"] == "25"
    assert notes["ganops.io/stable-replicas"] == "4"
    assert notes["ganops.io/model-version"] == "7"

    # A restarted bot reads the canary back, and moves it on.
    assert deployer(cluster).canary("cut") == CanaryServed("cut", "7", URI_V7, 10, "6")
    assert deployer(cluster).canary("cyclegan") is None
    result = deployer(cluster).set_canary("cut", "7", URI_V7, 50)
    assert result.ok, result.message
    assert "2 of 4 pods (50%)" in result.message
    stable, canary = cluster.obj(), cluster.obj(CANARY)
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == (2, 2)
    assert canary["metadata"]["annotations"]["ganops.io/canary-percent"] == "50"
    assert canary["metadata"]["annotations"]["ganops.io/stable-replicas"] == "4"
    assert creates(cluster) == 1  # the same canary Deployment, patched
    assert deployer(cluster).canary("cut") == CanaryServed("cut", "7", URI_V7, 50, "6")

    # Back down to 10 (an approver's choice): the stable grows again before the canary shrinks.
    assert deployer(cluster).set_canary("cut", "7", URI_V7, 10).ok
    assert (cluster.obj()["spec"]["replicas"], cluster.obj(CANARY)["spec"]["replicas"]) == (3, 1)
    writes = [(r.name, r.data) for r in cluster.handler[kmock.action.UPDATE]]
    to = [{"op": "replace", "path": "/spec/replicas", "value": n} for n in (0, 1, 2, 3)]
    stable_grew = max(i for i, (n, ops) in enumerate(writes) if n == NAME and ops[-1] == to[3])
    canary_shrank = min(i for i, (n, ops) in enumerate(writes) if n == CANARY and to[1] in ops)
    assert stable_grew < canary_shrank

    result = deployer(cluster).set_canary("cut", "7", URI_V7, 100)
    assert result.ok, result.message
    assert (result.version, result.previous_version) == ("7", "6")
    assert "canary Deployment removed" in result.message
    stable = cluster.obj()
    assert cluster.obj(CANARY) is None
    assert stable["spec"]["replicas"] == 4
    assert env(stable)["GANOPS_MODEL_URI"] == URI_V7
    assert pod_labels(stable)[TRACK] == "stable"
    assert stable["metadata"]["annotations"]["ganops.io/previous-version"] == "6"
    assert deployer(cluster).canary("cut") is None
    assert deployer(cluster).served("cut") == Served("cut", "7", URI_V7, settled=True)


def test_abort_removes_the_canary_and_restores_the_stable(cluster: FakeCluster) -> None:
    before = cluster.obj()
    assert deployer(cluster).set_canary("cut", "7", URI_V7, 50).ok
    assert cluster.obj()["spec"]["replicas"] == 2
    result = deployer(cluster).abort_canary("cut")
    assert result.ok, result.message
    assert (result.version, result.model_uri, result.rolled_back) == ("6", URI_V6, True)
    assert result.message == "canary v7 removed; v6 takes all traffic on 4 replicas"
    assert cluster.obj(CANARY) is None
    stable = cluster.obj()
    assert stable["spec"]["replicas"] == 4
    assert stable["spec"]["template"] == before["spec"]["template"]
    again = deployer(cluster).abort_canary("cut")
    assert (again.ok, again.rolled_back, again.message) == (True, False, "no canary running")


def test_a_canary_that_never_gets_ready_is_removed(cluster: FakeCluster) -> None:
    assert deployer(cluster).set_canary("cut", "7", URI_V7, 10).ok
    assert cluster.obj()["spec"]["replicas"] == 3
    broken = "models:/ganops-cut/8-broken"
    result = deployer(cluster, deadline=1.5).set_canary("cut", "8", broken, 10)
    assert not result.ok
    assert result.rolled_back
    assert "canary v8 failed (ProgressDeadlineExceeded" in result.message
    assert result.message.endswith("v6 takes all traffic on 4 replicas")
    assert result.model_uri == URI_V6
    history = cluster.call(
        lambda: [v.raw for v in cluster.handler.objects[(kmock.resource("apps/v1/deployments"),
                                                         NS, CANARY)].history if v]
    )  # fmt: skip
    assert any(env(v)["GANOPS_MODEL_URI"] == broken for v in history)  # it really ran
    assert cluster.obj(CANARY) is None
    assert cluster.obj()["spec"]["replicas"] == 4
    assert env(cluster.obj())["GANOPS_MODEL_URI"] == URI_V6
    assert deployer(cluster).canary("cut") is None


def test_a_stable_selector_without_the_track_is_refused() -> None:
    """An install from before the track label: its selector would adopt the canary's pods."""
    with serve_kmock(FakeCluster(seed=seed_deployment)) as old:
        with pytest.raises(DeployError) as info:
            deployer(old).set_canary("cut", "7", URI_V7, 10)
        assert "ganops.io/track: stable" in str(info.value)
        assert "re-create it from manifests/serving" in str(info.value)
        assert creates(old) == 0
        assert old.obj(CANARY) is None


def test_rbac_on_the_canary_says_what_to_grant(cluster: FakeCluster) -> None:
    cluster.forbidden.add("create")
    with pytest.raises(DeployError) as info:
        deployer(cluster).set_canary("cut", "7", URI_V7, 10)
    assert str(info.value).startswith(
        f"RBAC: the bot may not create deployments.apps '{CANARY}' in namespace '{NS}'"
    )
    assert cluster.obj(CANARY) is None
    assert cluster.obj()["spec"]["replicas"] == 4


def test_the_percent_is_checked(cluster: FakeCluster) -> None:
    for bad in (0, 101, -5):
        with pytest.raises(DeployError, match=r"1\.\.100 percent"):
            deployer(cluster).set_canary("cut", "7", URI_V7, bad)


def test_a_deploy_during_a_canary_ends_it(cluster: FakeCluster) -> None:
    """A rollback (or the start-up reconciliation) deploys outright: one version after it."""
    assert deployer(cluster).set_canary("cut", "7", URI_V7, 50).ok
    result = deployer(cluster).deploy("cut", "5", "models:/ganops-cut/5")
    assert result.ok, result.message
    assert cluster.obj(CANARY) is None
    stable = cluster.obj()
    assert stable["spec"]["replicas"] == 4
    assert env(stable)["GANOPS_MODEL_VERSION"] == "5"
    assert deployer(cluster).canary("cut") is None


def test_an_abort_cut_short_is_finished_by_the_next_abort(cluster: FakeCluster) -> None:
    """The bot killed after scaling the stable back, before deleting the canary: the canary
    (and the replica count to restore) is still there for the next abort."""
    assert deployer(cluster).set_canary("cut", "7", URI_V7, 50).ok

    class Killed(BaseException):
        pass

    doomed = deployer(cluster)

    def killed(name: str) -> bool:
        raise Killed

    doomed.deployments.delete = killed  # type: ignore[method-assign]
    with pytest.raises(Killed):
        doomed.abort_canary("cut")
    assert deployer(cluster).canary("cut") == CanaryServed("cut", "7", URI_V7, 50, "6")
    assert cluster.obj()["spec"]["replicas"] == 4
    result = deployer(cluster).abort_canary("cut")
    assert result.ok, result.message
    assert result.message == "canary v7 removed; v6 takes all traffic on 4 replicas"
    assert cluster.obj(CANARY) is None
    assert cluster.obj()["spec"]["replicas"] == 4
