"""The canary controller driving the real LocalDeployer (stand-in servers behind the real
local split): each step moves the split's share, the last promotes the canary's own process,
a failure leaves only the stable server, and a restarted bot (a new controller and a new
deployer on the same state) resumes at its step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.canary.controller import CanaryController
from ganops.bot.store import Store
from ganops.pipeline.deploy.local import LocalDeployer
from tests.bot.canary.test_controller import STEP_S, Clock, Scripted, Told
from tests.fakes.approvals import MemoryRegistry
from tests.fakes.bot_process import stub_cmd

pytestmark = pytest.mark.slow  # real server processes

ALICE, BOB = "U_ALICE", "U_BOB"


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        (tmp_path / "gates").mkdir()
        self.clock, self.analysis, self.told = Clock(), Scripted(), Told()
        self.registry = MemoryRegistry()
        self.registry.add("cut", "1", "2")
        self.registry.aliases[("cut", "champion")] = "1"
        self.deployer = self.new_deployer()
        assert self.deployer.deploy("cut", "1", "models:/ganops-cut/1").ok
        self.book, self.canaries = self.start()

    def new_deployer(self) -> LocalDeployer:
        return LocalDeployer(self.tmp_path / "state", server_cmd=stub_cmd(self.tmp_path / "gates"),
                             ready_timeout_s=10)  # fmt: skip

    def start(self) -> tuple[ApprovalBook, CanaryController]:
        book = ApprovalBook(Store(self.tmp_path / "state"), self.registry, self.deployer,
                            approvers=frozenset({BOB}), canary_steps=(10, 50, 100),
                            clock=self.clock)  # fmt: skip
        canaries = CanaryController(store=book.store, rollout=book.rollout, analyse=self.analysis,
                                    step_s=STEP_S, notifier=self.told, clock=self.clock)  # fmt: skip
        book.rollout.canary = canaries
        return book, canaries

    def percent(self) -> int | None:
        served = self.deployer.canary("cut")
        return served.percent if served is not None else None


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.deployer.stop()


def approve(rig: Rig) -> str:
    a = rig.book.request(model="cut", version="2", model_uri="models:/ganops-cut/2",
                         requested_by=ALICE)  # fmt: skip
    assert rig.book.decide(a.approval_id, BOB, "approve").status == "approved"
    return a.approval_id


def test_promoted_step_by_step_through_the_split_and_resumed_after_a_restart(rig: Rig) -> None:
    approve(rig)
    assert rig.percent() == 10
    endpoint = rig.deployer.endpoint()
    rig.clock.now += STEP_S
    assert rig.canaries.tick() == 1
    assert rig.percent() == 50
    # The bot restarts: a new deployer and controller on the same state resume at 50%.
    rig.deployer = rig.new_deployer()
    rig.book, rig.canaries = rig.start()
    assert rig.percent() == 50
    rig.clock.now += STEP_S
    assert rig.canaries.tick() == 1
    assert rig.percent() is None
    assert rig.deployer.current("cut") == "2"
    assert rig.deployer.endpoint() == endpoint  # clients kept one address throughout
    assert rig.registry.aliases[("cut", "champion")] == "2"


def test_a_failed_canary_leaves_only_the_stable_server(rig: Rig) -> None:
    approve(rig)
    rig.analysis.outcome = "fail"
    rig.clock.now += 5
    assert rig.canaries.tick() == 1
    assert rig.percent() is None
    assert rig.deployer.current("cut") == "1"
    assert rig.registry.aliases[("cut", "champion")] == "1"
    assert rig.told.posts[-1] == ("rolled_back", 10, True)
