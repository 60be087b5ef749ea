"""Start-up reconciliation with the real KubernetesDeployer against kmock (the real
`kubernetes` client over HTTP): the bot was killed after patching the Deployment to a version
whose pods never get ready. Finishing it fails, so the last approved deploy is put back."""

from __future__ import annotations

from pathlib import Path

from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.approvals.recover import Reconciler
from ganops.bot.ports import Served
from ganops.bot.store import Store
from tests.bot.approvals.test_reconcile import BOB, deployed_before, killed_mid_rollout
from tests.fakes.approvals import MemoryRegistry
from tests.pipeline.deploy import test_kubernetes as kube
from tests.pipeline.deploy.test_kubernetes import (
    URI_V6,
    FakeCluster,
    killed_after_patch,
    make_deployer,
)

cluster = kube.cluster  # kmock with a deployment controller, as the deployer's own tests use

BROKEN = "models:/ganops-cut/8-broken"


def test_a_half_rolled_broken_version_is_rolled_back_to_the_champion(
    tmp_path: Path, cluster: FakeCluster
) -> None:
    registry = MemoryRegistry()
    registry.add("cut", "6", "8")
    registry.aliases[("cut", "champion")] = "6"
    deployer = make_deployer(cluster, deadline=2.0)
    book = ApprovalBook(Store(tmp_path), registry, deployer, approvers=frozenset({BOB}))
    deployed_before(book, "6", URI_V6)  # the way back is the last approved deploy
    a = killed_mid_rollout(book, None, version="8", model_uri=BROKEN)
    killed_after_patch(cluster, "8", BROKEN)  # what the killed bot had done
    assert deployer.served("cut") == Served("cut", "8", BROKEN, settled=False)

    [done] = Reconciler(book, deployer, registry, models=("cut",)).run()
    assert done.plan.action == "finish"
    assert done.deploy is not None
    assert not done.deploy.ok
    assert done.restore is not None
    assert done.restore.ok, done.restore.message
    assert deployer.served("cut") == Served("cut", "6", URI_V6, settled=True)
    assert (done.served, done.champion, done.agree) == ("6", "6", True)
    assert registry.aliases[("cut", "champion")] == "6"
    result = book.deploy_result(a.approval_id)
    assert result is not None
    assert not result.ok
