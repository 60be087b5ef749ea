"""An approved deploy as a canary, step by step, on SQLite and a real PostgreSQL: promoted at
the last step (only then does the alias move), rolled back by a failed analysis (alias kept,
channel told), held without traffic, resumed after a restart, ended by approvers' clicks,
superseded by a newer deploy, and left alone by the start-up reconciliation."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.approvals.recover import Reconciler
from ganops.bot.blocks.canary import CanaryView
from ganops.bot.canary.controller import CanaryController
from ganops.bot.canary.table import Canary
from ganops.bot.ports import Approval
from ganops.bot.store import Store
from tests.fakes.approvals import MemoryRegistry, RecordingDeployer
from tests.fakes.postgres import backend_store

pytestmark = pytest.mark.usefixtures("both_backends")

ALICE, BOB = "U_ALICE", "U_BOB"
STEP_S = 600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """The analysis: whatever outcome the test sets, with the window it was asked about."""

    def __init__(self) -> None:
        self.outcome = "pass"
        self.failing = "GANOPS_CANARY_MAX_ERROR_RATE"  # the check the failing row is for
        self.windows: list[float] = []

    def __call__(self, canary: Canary, window_s: float) -> Mapping[str, Any]:
        self.windows.append(window_s)
        reasons = ["error rate 12.0% vs 0.0% (GANOPS_CANARY_MAX_ERROR_RATE=1)"]
        rows = [{"metric": "error rate", "canary": "12.0%", "stable": "0.0%", "limit": "+1 pp",
                 "ok": self.outcome != "fail", "canary_value": 0.12, "stable_value": 0.0,
                 "setting": self.failing}]  # fmt: skip
        return {"outcome": self.outcome, "reasons": reasons if self.outcome != "pass" else [],
                "rows": rows}  # fmt: skip


class Told:
    def __init__(self) -> None:
        self.posts: list[tuple[str, int, bool]] = []

    def tell(self, canary: Canary, view: CanaryView, *, channel_too: bool) -> None:
        self.posts.append((view.moment, view.percent, channel_too))


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.clock = Clock()
        self.registry = MemoryRegistry()
        self.registry.add("cut", "1", "2", "3")
        self.registry.aliases[("cut", "champion")] = "1"
        self.deployer = RecordingDeployer(
            serving={"cut": "1"}, uris={"cut": "models:/ganops-cut/1"}
        )
        self.analysis = Scripted()
        self.told = Told()
        self.store = backend_store(tmp_path)
        self.book, self.canaries = self.start()

    def start(self, store: Store | None = None) -> tuple[ApprovalBook, CanaryController]:
        """A bot process: a book and its controller on the (shared) store."""
        book = ApprovalBook(store or self.store, self.registry, self.deployer,
                            approvers=frozenset({BOB}), canary_steps=(10, 50, 100),
                            clock=self.clock)  # fmt: skip
        canaries = CanaryController(store=book.store, rollout=book.rollout, analyse=self.analysis,
                                    step_s=STEP_S, notifier=self.told, clock=self.clock)  # fmt: skip
        book.rollout.canary = canaries
        return book, canaries

    def approve(self, version: str = "2") -> Approval:
        a = self.book.request(model="cut", version=version,
                              model_uri=f"models:/ganops-cut/{version}", requested_by=ALICE)  # fmt: skip
        assert self.book.decide(a.approval_id, BOB, "approve").status == "approved"
        return a

    def champion(self) -> str | None:
        return self.registry.aliases.get(("cut", "champion"))

    def later(self, seconds: float) -> None:
        self.clock.now += seconds


@pytest.fixture
def w(tmp_path: Path) -> World:
    return World(tmp_path)


def test_a_canary_passes_each_step_and_only_the_last_moves_the_alias(w: World) -> None:
    a = w.approve()
    assert w.deployer.canary_calls == [("cut", "2", 10)]
    assert w.deployer.serving["cut"] == "1"  # the stable version still serves
    assert w.champion() == "1"
    result = w.book.deploy_result(a.approval_id)
    assert result is not None
    assert result.ok
    assert "canary at 10%" in result.message
    assert w.told.posts == [("step", 10, False)]

    assert w.canaries.tick() == 0  # judged, but the step has not ended
    w.later(STEP_S / 2)
    assert w.canaries.tick() == 0
    assert w.analysis.windows[-1] == pytest.approx(STEP_S / 2)
    w.later(STEP_S / 2)
    assert w.canaries.tick() == 1
    assert w.deployer.canary_calls[-1] == ("cut", "2", 50)
    assert w.champion() == "1"
    w.later(STEP_S)
    assert w.canaries.tick() == 1
    assert w.deployer.serving["cut"] == "2"  # promoted: the canary serves everything
    assert w.deployer.canary("cut") is None
    assert w.champion() == "2"
    assert w.registry.aliases[("cut", "previous_champion")] == "1"
    c = w.canaries.get(a.approval_id)
    assert c is not None
    assert c.state == "promoted"
    result = w.book.deploy_result(a.approval_id)
    assert result is not None
    assert result.ok
    assert "promoted" in result.message
    assert [p[:2] for p in w.told.posts] == [("step", 10), ("step", 50), ("promoted", 50)]
    assert w.canaries.tick() == 0  # nothing left to judge


def test_a_failed_analysis_rolls_back_at_once_keeps_the_alias_and_tells_the_channel(
    w: World,
) -> None:
    a = w.approve()
    w.later(30)
    w.analysis.outcome = "fail"
    assert w.canaries.tick() == 1  # mid-step: a failure does not wait for the step's end
    assert w.deployer.canary_calls[-1] == ("cut", "abort", 0)
    assert w.deployer.canary("cut") is None
    assert w.deployer.serving["cut"] == "1"
    assert w.champion() == "1"
    assert w.told.posts[-1] == ("rolled_back", 10, True)
    result = w.book.deploy_result(a.approval_id)
    assert result is not None
    assert not result.ok
    assert result.rolled_back
    assert "error rate 12.0%" in result.message
    audit = [
        (r.actor, r.action, r.outcome) for r in w.store.list_audit(limit=20, obj=a.approval_id)
    ]
    assert ("ganops", "canary", "rolled_back") in audit


@pytest.mark.parametrize(
    "failing",
    [
        "GANOPS_CANARY_MAX_LATENCY_RATIO",
        "GANOPS_CANARY_MAX_DRIFT",
        "GANOPS_CANARY_MAX_OUTPUT_SHIFT",
    ],
)
def test_a_slow_drifting_or_odd_canary_is_judged_on_the_whole_step_then_rolled_back(
    w: World, failing: str
) -> None:
    a = w.approve()
    w.analysis.outcome, w.analysis.failing = "fail", failing
    w.later(30)
    assert w.canaries.tick() == 0  # a cold canary's first seconds of p95 are not a verdict
    c = w.canaries.get(a.approval_id)
    assert c is not None
    assert c.state == "running"
    w.later(STEP_S)
    assert w.canaries.tick() == 1
    assert w.deployer.canary("cut") is None
    assert w.champion() == "1"
    assert w.told.posts[-1] == ("rolled_back", 10, True)  # the channel is told


def test_a_step_without_traffic_is_held_told_once_then_moves_when_traffic_comes(w: World) -> None:
    w.approve()
    w.analysis.outcome = "inconclusive"
    w.later(STEP_S)
    assert w.canaries.tick() == 0
    w.later(STEP_S)
    assert w.canaries.tick() == 0
    assert [p[0] for p in w.told.posts] == ["step", "held"]
    assert w.deployer.canary_calls == [("cut", "2", 10)]
    w.analysis.outcome = "pass"
    w.later(STEP_S)
    assert w.canaries.tick() == 1
    assert w.deployer.canary_calls[-1] == ("cut", "2", 50)


def test_a_restart_resumes_the_canary_at_its_step_with_its_clock(w: World) -> None:
    a = w.approve()
    w.later(STEP_S)
    w.canaries.tick()  # now at 50%
    w.later(STEP_S / 3)
    # The bot process goes away; a new one starts on the same database.
    _, canaries = w.start(backend_store(w.tmp_path))
    c = canaries.get(a.approval_id)
    assert c is not None
    assert (c.state, c.percent) == ("running", 50)
    assert canaries.tick() == 0  # a third of the step is not the step
    assert w.analysis.windows[-1] == pytest.approx(STEP_S / 3)
    w.later(STEP_S)
    assert canaries.tick() == 1
    assert w.champion() == "2"


def test_a_canary_lost_from_the_endpoint_is_set_again_at_its_share(w: World) -> None:
    w.approve()
    w.deployer.canaries.clear()  # e.g. someone deleted the canary Deployment
    w.canaries.tick()
    served = w.deployer.canary("cut")
    assert served is not None
    assert (served.version, served.percent) == ("2", 10)


def test_promote_now_and_roll_back_end_it_once_on_record(w: World) -> None:
    a = w.approve()
    said = w.canaries.promote_now(a.approval_id, BOB)
    assert "promoted" in said
    assert w.champion() == "2"
    assert "ended already" in w.canaries.roll_back(a.approval_id, BOB)
    assert w.champion() == "2"
    audit = [
        (r.actor, r.action, r.outcome) for r in w.store.list_audit(limit=20, obj=a.approval_id)
    ]
    assert (BOB, "canary", "promoted") in audit

    b = w.approve("3")
    said = w.canaries.roll_back(b.approval_id, BOB)
    assert "rolled back" in said
    assert w.champion() == "2"
    assert w.deployer.serving["cut"] == "2"
    assert "not known" in w.canaries.promote_now("nope", BOB)


def test_a_newer_approval_supersedes_the_running_canary(w: World) -> None:
    a = w.approve("2")
    b = w.approve("3")
    first, second = w.canaries.get(a.approval_id), w.canaries.get(b.approval_id)
    assert first is not None
    assert second is not None
    assert first.state == "superseded"
    assert second.state == "running"
    served = w.deployer.canary("cut")
    assert served is not None
    assert served.version == "3"
    result = w.book.deploy_result(a.approval_id)
    assert result is not None
    assert not result.ok
    assert "v3" in result.message


def test_no_canary_for_the_first_deploy_or_with_one_step(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.deployer.serving.clear()
    a = w.approve()
    assert w.deployer.canary_calls == []
    assert w.champion() == "2"
    assert w.canaries.get(a.approval_id) is None


def test_the_startup_reconciliation_leaves_a_running_canary_alone(w: World) -> None:
    w.approve()
    done = Reconciler(w.book, w.deployer, w.registry, models=("cut",)).run()
    assert done == []
    assert w.champion() == "1"  # not "the alias lagged the last ok deploy"
    assert w.deployer.calls == []  # and no redeploy
