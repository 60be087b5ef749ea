from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from ganops.bot.approvals.book import ApprovalBook, NothingToRollBack
from ganops.bot.ports import Approval, DeployError, DeployResult, Served
from tests.fakes.approvals import MemoryRegistry, RecordingDeployer
from tests.fakes.postgres import backend_store

# Each test runs on SQLite and on a real PostgreSQL (tests/conftest.py: both_backends).
pytestmark = pytest.mark.usefixtures("both_backends")

ALICE, BOB, CAROL, DAVE = "U_ALICE", "U_BOB", "U_CAROL", "U_DAVE"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry() -> MemoryRegistry:
    reg = MemoryRegistry()
    reg.add("cut", "1", "2", "3")
    reg.aliases[("cut", "champion")] = "1"
    return reg


@pytest.fixture
def deployer() -> RecordingDeployer:
    return RecordingDeployer()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_book(
    tmp_path: Path,
    registry: MemoryRegistry,
    deployer: Any,
    clock: Clock | None = None,
    **kw: Any,
) -> ApprovalBook:
    kw.setdefault("approvers", frozenset({BOB, CAROL}))
    return ApprovalBook(backend_store(tmp_path), registry, deployer, clock=clock or Clock(), **kw)


def ask(book: ApprovalBook, version: str = "2", model: str = "cut", by: str = ALICE) -> Approval:
    return book.request(
        model=model, version=version, model_uri=f"models:/ganops-{model}/{version}", requested_by=by
    )


def actions(book: ApprovalBook, approval_id: str) -> list[tuple[str, str, str]]:
    rows = reversed(book.store.list_audit(limit=100, obj=approval_id))
    return [(r.actor, r.action, r.outcome) for r in rows]


def test_request_is_pending_with_an_opaque_id(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer)
    a = ask(book)
    assert a.state == "pending"
    assert len(a.approval_id) >= 20
    assert "cut" not in a.approval_id
    assert book.get(a.approval_id) == a
    assert [p.approval_id for p in book.pending()] == [a.approval_id]
    assert actions(book, a.approval_id) == [(ALICE, "request", "pending")]


def test_approve_deploys_once_moves_aliases_and_tags(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer)
    a = ask(book)
    out = book.decide(a.approval_id, BOB, "approve")
    assert out.status == "approved"
    assert out.deploy is not None
    assert out.deploy.ok
    assert deployer.calls == [("cut", "2", "models:/ganops-cut/2")]
    assert registry.aliases[("cut", "champion")] == "2"
    assert registry.aliases[("cut", "previous_champion")] == "1"
    tags = registry.tags[("cut", "2")]
    assert tags["approved_by"] == BOB
    assert tags["decision"] == "approved"
    assert tags["approved_at"].endswith("Z")
    decided = book.get(a.approval_id)
    assert decided is not None
    assert (decided.state, decided.decided_by, decided.approvers) == ("approved", BOB, (BOB,))
    assert book.deploy_result(a.approval_id) == out.deploy
    assert actions(book, a.approval_id) == [
        (ALICE, "request", "pending"),
        (BOB, "click", "approve"),
        (BOB, "decide", "approved"),
        ("ganops", "deploy", "ok"),
    ]


def test_reject_deploys_nothing(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer)
    a = ask(book)
    out = book.decide(a.approval_id, CAROL, "reject")
    assert out.status == "rejected"
    assert out.approval is not None
    assert out.approval.decided_by == CAROL
    assert deployer.calls == []
    assert registry.aliases[("cut", "champion")] == "1"
    assert registry.tags[("cut", "2")]["decision"] == "rejected"


def test_first_decision_wins_and_later_ones_see_who(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer)
    a = ask(book)
    assert book.decide(a.approval_id, BOB, "approve").status == "approved"
    again = book.decide(a.approval_id, BOB, "approve")
    other = book.decide(a.approval_id, CAROL, "reject")
    assert again.status == other.status == "already_decided"
    assert f"approved by <@{BOB}> at" in other.message
    assert len(deployer.calls) == 1


def test_not_an_approver_is_refused_and_audited(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer)
    a = ask(book)
    out = book.decide(a.approval_id, DAVE, "approve")
    assert out.status == "refused"
    assert "not an approver" in out.message
    assert book.get(a.approval_id).state == "pending"  # type: ignore[union-attr]
    assert (DAVE, "decide", "refused") in actions(book, a.approval_id)
    assert deployer.calls == []


@pytest.mark.parametrize(("allow_self", "status"), [(False, "refused"), (True, "approved")])
def test_self_approval(
    tmp_path: Path,
    registry: MemoryRegistry,
    deployer: RecordingDeployer,
    allow_self: bool,
    status: str,
) -> None:
    book = make_book(tmp_path, registry, deployer, allow_self=allow_self)
    a = ask(book, by=BOB)
    out = book.decide(a.approval_id, BOB, "approve")
    assert out.status == status
    assert len(deployer.calls) == (1 if allow_self else 0)


def test_requester_may_still_reject_their_own(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer)
    a = ask(book, by=BOB)
    assert book.decide(a.approval_id, BOB, "reject").status == "rejected"


def test_user_group_members_may_decide(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    lookups: list[str] = []

    def members(group: str) -> set[str]:
        lookups.append(group)
        return {DAVE} if group == "S_OPS" else set()

    book = make_book(
        tmp_path,
        registry,
        deployer,
        approvers=frozenset(),
        approver_groups=frozenset({"S_OPS"}),
        group_members=members,
    )
    a = ask(book)
    assert book.decide(a.approval_id, CAROL, "approve").status == "refused"
    assert book.decide(a.approval_id, DAVE, "approve").status == "approved"
    assert lookups == ["S_OPS", "S_OPS"]  # looked up at every decision, not cached


def test_group_lookup_failure_refuses(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    def broken(group: str) -> set[str]:
        raise ConnectionError("slack down")

    book = make_book(
        tmp_path,
        registry,
        deployer,
        approvers=frozenset(),
        approver_groups=frozenset({"S_OPS"}),
        group_members=broken,
    )
    a = ask(book)
    out = book.decide(a.approval_id, DAVE, "approve")
    assert out.status == "refused"
    assert "group" in out.message
    assert deployer.calls == []


def test_unknown_id_and_bad_decision(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer)
    assert book.decide("nope", BOB, "approve").status == "not_found"
    a = ask(book)
    out = book.decide(a.approval_id, BOB, "maybe")
    assert out.status == "refused"
    assert "approve or reject" in out.message


def test_expiry_by_clock_on_click(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer, clock: Clock
) -> None:
    book = make_book(tmp_path, registry, deployer, clock=clock, ttl_s=60)
    a = ask(book)
    clock.now += 61
    out = book.decide(a.approval_id, BOB, "approve")
    assert out.status == "expired"
    assert "expired" in out.message
    assert book.get(a.approval_id).state == "expired"  # type: ignore[union-attr]
    assert deployer.calls == []
    assert registry.tags[("cut", "2")]["decision"] == "expired"
    # and a later click is refused the same way
    assert book.decide(a.approval_id, CAROL, "approve").status == "expired"


def test_expire_due_expires_only_overdue(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer, clock: Clock
) -> None:
    book = make_book(tmp_path, registry, deployer, clock=clock, ttl_s=60)
    old = ask(book, model="cut")
    clock.now += 30
    young = ask(book, model="cyclegan")
    clock.now += 31
    expired = book.expire_due()
    assert [e.approval_id for e in expired] == [old.approval_id]
    assert book.expire_due() == []  # once
    assert book.get(young.approval_id).state == "pending"  # type: ignore[union-attr]
    assert ("ganops", "expire", "expired") in actions(book, old.approval_id)


def test_newer_request_supersedes_older_for_same_model(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer)
    first = ask(book, "2")
    other_model = ask(book, "1", model="cyclegan")
    second = ask(book, "3")
    assert book.get(first.approval_id).state == "superseded"  # type: ignore[union-attr]
    assert book.get(other_model.approval_id).state == "pending"  # type: ignore[union-attr]
    out = book.decide(first.approval_id, BOB, "approve")
    assert out.status == "already_decided"
    assert "superseded" in out.message
    assert book.decide(second.approval_id, BOB, "approve").status == "approved"
    assert deployer.calls == [("cut", "3", "models:/ganops-cut/3")]


def test_two_person_rule_needs_two_different_approvers(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer, required=2)
    a = ask(book)
    first = book.decide(a.approval_id, BOB, "approve")
    assert first.status == "recorded"
    assert "1 more" in first.message
    assert book.decide(a.approval_id, BOB, "approve").status == "recorded"
    assert deployer.calls == []
    assert book.get(a.approval_id).approvers == (BOB,)  # type: ignore[union-attr]
    second = book.decide(a.approval_id, CAROL, "yes")
    assert second.status == "approved"
    assert second.approval is not None
    assert second.approval.approvers == (BOB, CAROL)
    assert registry.tags[("cut", "2")]["approved_by"] == f"{BOB},{CAROL}"
    assert len(deployer.calls) == 1


def test_a_vote_counts_once_inside_the_transaction(
    tmp_path: Path,
    registry: MemoryRegistry,
    deployer: RecordingDeployer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two yeses by one user that both got past the quick check before the transaction (a
    double click, a button and /ganops at once) still count once: the transaction decides."""
    book = make_book(tmp_path, registry, deployer, required=2)
    a = ask(book)
    monkeypatch.setattr(book, "_refusal", lambda *args: None)  # both raced past it
    assert book.decide(a.approval_id, BOB, "approve", path="button").status == "recorded"
    again = book.decide(a.approval_id, BOB, "approve", path="slash")
    assert (again.status, again.message) == (
        "recorded",
        "Your approval is already recorded; a second approver is needed.",
    )
    assert book.get(a.approval_id).approvers == (BOB,)  # type: ignore[union-attr]
    assert book.get(a.approval_id).state == "pending"  # type: ignore[union-attr]
    assert deployer.calls == []
    assert actions(book, a.approval_id)[-1] == (BOB, "decide", "duplicate")


def test_the_requesters_auto_deploy_vote_needs_an_approver(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer, required=2)
    mine = ask(book, by=CAROL)
    vote = book.decide(mine.approval_id, CAROL, "approve", path="policy", requester_vote=True)
    assert vote.status == "recorded"  # her own run, yet her vote: auto_deploy is hers to give
    theirs = ask(book, version="3", by=ALICE)
    refused = book.decide(theirs.approval_id, ALICE, "approve", requester_vote=True)
    assert (refused.status, refused.message) == ("refused", "You are not an approver.")
    assert deployer.calls == []


def test_a_rollback_supersedes_nothing(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer)
    registry.aliases[("cut", "previous_champion")] = "1"
    pending = ask(book)
    book.request_rollback("cut", BOB)
    assert book.get(pending.approval_id).state == "pending"  # type: ignore[union-attr]
    assert book.decide(pending.approval_id, CAROL, "approve").status == "approved"


def test_two_person_rule_one_no_rejects(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer, required=2)
    a = ask(book)
    book.decide(a.approval_id, BOB, "approve")
    assert book.decide(a.approval_id, CAROL, "reject").status == "rejected"
    assert deployer.calls == []


def test_failed_deploy_moves_no_alias(tmp_path: Path, registry: MemoryRegistry) -> None:
    deployer = RecordingDeployer(ok=False)
    book = make_book(tmp_path, registry, deployer)
    a = ask(book)
    out = book.decide(a.approval_id, BOB, "approve")
    assert out.status == "approved"
    assert out.deploy is not None
    assert not out.deploy.ok
    assert out.deploy.rolled_back
    assert "deploy failed" in out.message
    assert registry.aliases == {("cut", "champion"): "1"}
    assert ("ganops", "deploy", "rolled_back") in actions(book, a.approval_id)


class RaisingDeployer:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def deploy(self, model: str, version: str, model_uri: str) -> DeployResult:
        raise self.exc

    def current(self, model: str) -> str | None:
        return None

    def served(self, model: str) -> Served | None:
        return None


@pytest.mark.parametrize("exc", [DeployError("forbidden: patch deployments"), RuntimeError("boom")])
def test_deploy_errors_are_recorded_not_raised(
    tmp_path: Path, registry: MemoryRegistry, exc: Exception
) -> None:
    book = make_book(tmp_path, registry, RaisingDeployer(exc))
    a = ask(book)
    out = book.decide(a.approval_id, BOB, "approve")
    assert out.deploy is not None
    assert not out.deploy.ok
    assert str(exc) in out.deploy.message
    assert book.deploy_result(a.approval_id) == out.deploy
    assert ("ganops", "deploy", "failed") in actions(book, a.approval_id)
    assert registry.aliases == {("cut", "champion"): "1"}


def test_registry_outage_keeps_the_decision(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer)
    a = ask(book)
    registry.fail = True
    out = book.decide(a.approval_id, BOB, "approve")
    assert out.status == "approved"
    assert len(deployer.calls) == 1
    trail = actions(book, a.approval_id)
    assert ("ganops", "tag", "failed") in trail
    assert ("ganops", "alias", "failed") in trail
    assert book.store.list_audit(obj=a.approval_id)[0].detail["aliases_moved"] is False


def test_rollback_goes_through_the_same_path(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer)
    with pytest.raises(NothingToRollBack, match="no previous champion"):
        book.request_rollback("cut", ALICE)
    with pytest.raises(NothingToRollBack, match="no version 9"):
        book.request_rollback("cut", ALICE, version="9")
    book.decide(ask(book, "2").approval_id, BOB, "approve")  # champion 2, previous 1
    rb = book.request_rollback("cut", ALICE)
    assert (rb.kind, rb.version, rb.model_uri) == ("rollback", "1", "models:/ganops-cut/1")
    assert book.decide(rb.approval_id, DAVE, "approve").status == "refused"
    assert book.decide(rb.approval_id, CAROL, "approve").status == "approved"
    assert deployer.calls[-1] == ("cut", "1", "models:/ganops-cut/1")
    assert registry.aliases[("cut", "champion")] == "1"
    assert registry.aliases[("cut", "previous_champion")] == "2"


def test_pending_approval_survives_a_restart(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    a = ask(make_book(tmp_path, registry, deployer))
    reborn = make_book(tmp_path, registry, deployer)
    assert [p.approval_id for p in reborn.pending()] == [a.approval_id]
    assert reborn.decide(a.approval_id, BOB, "approve").status == "approved"
    assert len(deployer.calls) == 1


def test_twenty_threads_one_deploy(tmp_path: Path, registry: MemoryRegistry) -> None:
    deployer = RecordingDeployer(delay_s=0.05)
    book = make_book(tmp_path, registry, deployer, approvers=frozenset(f"U{i}" for i in range(20)))
    a = ask(book)
    barrier = threading.Barrier(20)
    statuses: list[str] = []

    def click(i: int) -> None:
        barrier.wait()
        statuses.append(book.decide(a.approval_id, f"U{i}", "approve").status)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(deployer.calls) == 1
    assert sorted(statuses) == ["already_decided"] * 19 + ["approved"]
    decisions = [r for r in book.store.list_audit(100, a.approval_id) if r.action == "decide"]
    assert [r.outcome for r in decisions].count("approved") == 1


def test_on_decided_runs_before_the_deploy(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer)
    a = ask(book)
    seen: list[tuple[str, int]] = []
    book.decide(
        a.approval_id,
        BOB,
        "approve",
        on_decided=lambda x: seen.append((x.state, len(deployer.calls))),
    )
    assert seen == [("approved", 0)]


def test_card_ledger_tracks_what_slack_shows(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer)
    a = ask(book)
    book.attach_message(a.approval_id, "C1", "111.222", blocks=[{"type": "divider"}])
    assert book.cards.to_sync() == []
    book.decide(a.approval_id, BOB, "approve")
    assert [x.approval_id for x in book.cards.to_sync()] == [a.approval_id]
    book.cards.mark(a.approval_id, "approved")
    assert book.cards.to_sync() == []
    assert book.cards.blocks(a.approval_id) == [{"type": "divider"}]
    assert [x.approval_id for x in book.cards.results_to_post()] == [a.approval_id]
    assert book.cards.claim_result(a.approval_id) is True
    assert book.cards.claim_result(a.approval_id) is False
    assert book.cards.results_to_post() == []


def test_a_failing_on_decided_does_not_stop_the_deploy(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> None:
    book = make_book(tmp_path, registry, deployer)
    a = ask(book)

    def broken(_: Approval) -> None:
        raise ConnectionError("slack down")

    assert book.decide(a.approval_id, BOB, "approve", on_decided=broken).status == "approved"
    assert len(deployer.calls) == 1


def test_a_deploy_that_never_finished_is_settled(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer, clock: Clock
) -> None:
    book = make_book(tmp_path, registry, deployer, clock=clock)
    a = ask(book)
    with book.store.tx() as conn:  # what a crash between the decision and the deploy leaves
        conn.execute(
            "UPDATE approvals SET state='approved', decided_by=?, decided_at=? WHERE approval_id=?",
            (BOB, clock.now, a.approval_id),
        )
    assert book.settle_interrupted() == []  # a deploy may still be running
    clock.now += 3601
    assert [x.approval_id for x in book.settle_interrupted()] == [a.approval_id]
    result = book.deploy_result(a.approval_id)
    assert result is not None
    assert "interrupted" in result.message
    assert book.settle_interrupted() == []
    assert ("ganops", "deploy", "failed") in actions(book, a.approval_id)
