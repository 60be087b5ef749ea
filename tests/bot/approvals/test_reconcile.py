"""Start-up reconciliation: the pure plan for every case, then the executor against the real
ApprovalBook and store, an in-memory registry, a recording deployer and the local Slack.

The rule under test: a restart deploys nothing that no one approved. It finishes young
approved rollouts, reverts only to the last approved deploy, and reports (never "fixes") a
champion alias or a server that no approval explains."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from slack_sdk import WebClient

from ganops.bot.approvals import table
from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.approvals.reconcile import Champion, LastDeploy, ModelState, plan
from ganops.bot.approvals.recover import Reconciler, slack_notifier
from ganops.bot.local.slack import LocalSlack
from ganops.bot.ports import Approval, DeployResult, Served
from ganops.bot.store import Store
from tests.fakes.approvals import MemoryRegistry, RecordingDeployer

TOKEN, CHANNEL, ALICE, BOB = "xoxb-t", "C_OPS", "U_ALICE", "U_BOB"
V1 = Champion("1", "models:/ganops-cut/1")
LAST_V1 = LastDeploy(
    Approval("a1", None, "cut", "1", "models:/ganops-cut/1", "deploy", ALICE, "approved", 0, 60),
    ok=True,
    aliases_moved=True,
)


def approval(version: str, decided_at: float = 100.0, state: str = "approved") -> Approval:
    return Approval(
        approval_id=f"a{version}-{decided_at:.0f}",
        run_id=None,
        model="cut",
        version=version,
        model_uri=f"models:/ganops-cut/{version}",
        kind="deploy",
        requested_by=ALICE,
        state=state,  # type: ignore[arg-type]
        created_at=decided_at - 10,
        expires_at=decided_at + 1000,
        approvers=(BOB,),
        decided_by=BOB,
        decided_at=decided_at,
    )


def served(version: str, settled: bool = True) -> Served:
    return Served("cut", version, f"models:/ganops-cut/{version}", settled)


# --- the plan, case by case -----------------------------------------------------------------


def test_served_is_champion_and_nothing_in_flight_agrees() -> None:
    p = plan(ModelState("cut", served("1"), V1))
    assert p.action == "agree"


def test_served_newer_with_an_approval_in_flight_and_settled_is_adopted() -> None:
    a2 = approval("2")
    p = plan(ModelState("cut", served("2"), V1, (a2,)))
    assert (p.action, p.approval) == ("adopt", a2)


def test_served_newer_but_not_settled_is_rolled_out_again() -> None:
    a2 = approval("2")
    p = plan(ModelState("cut", served("2", settled=False), V1, (a2,), LAST_V1, LAST_V1))
    assert (p.action, p.approval, p.champion) == ("finish", a2, V1)  # V1: the way back
    assert "cut short" in p.reason
    bare = plan(ModelState("cut", served("2", settled=False), V1, (a2,)))
    assert (bare.action, bare.champion) == ("finish", None)  # no approved deploy to go back to


def test_served_still_the_champion_with_an_approval_in_flight_is_finished() -> None:
    a2 = approval("2")
    p = plan(ModelState("cut", served("1"), V1, (a2,)))
    assert (p.action, p.approval) == ("finish", a2)


def test_nothing_served_with_an_approval_in_flight_is_finished() -> None:
    a2 = approval("2")
    assert plan(ModelState("cut", None, V1, (a2,))).action == "finish"
    assert plan(ModelState("cut", None, None, (a2,))).action == "finish"  # the bootstrap


def test_served_and_alias_apart_with_no_approved_deploy_on_record_is_only_reported() -> None:
    v3 = Champion("3", "models:/ganops-cut/3")
    p = plan(ModelState("cut", served("2"), v3))  # was: deploy v3 because MLflow says so
    assert (p.action, p.champion) == ("report", None)
    assert "no approved deploy is on record" in p.reason


def test_served_other_than_the_last_approved_deploy_is_reported_not_reverted() -> None:
    p = plan(ModelState("cut", served("5"), V1, (), LAST_V1, LAST_V1))
    assert p.action == "report"
    assert "last approved deploy is v1 and no approved rollout explains it" in p.reason


def test_a_recorded_failed_rollout_is_reverted_to_the_last_approved_deploy() -> None:
    failed = LastDeploy(approval("5", decided_at=200), ok=False, aliases_moved=False)
    p = plan(ModelState("cut", served("5"), V1, (), failed, LAST_V1, now=300.0))
    assert (p.action, p.champion) == ("restore", V1)
    too_late = plan(ModelState("cut", served("5"), V1, (), failed, LAST_V1, now=10_000.0))
    assert too_late.action == "report"  # past its expiry: nothing is deployed on its behalf


def test_nothing_served_restores_the_last_approved_deploy_only() -> None:
    p = plan(ModelState("cut", None, V1, (), LAST_V1, LAST_V1))
    assert (p.action, p.champion) == ("restore", V1)
    assert plan(ModelState("cut", None, V1)).action == "report"  # the alias alone: no
    assert plan(ModelState("cut", None, None)).action == "agree"


def test_an_alias_moved_by_hand_is_reported_and_nothing_deploys() -> None:
    v3 = Champion("3", "models:/ganops-cut/3")
    p = plan(ModelState("cut", served("1"), v3, (), LAST_V1, LAST_V1))
    assert (p.action, p.approval) == ("report", None)
    assert "the champion alias names v3 but the last approved deploy is v1" in p.reason


def test_an_in_flight_approval_past_its_expiry_is_not_rolled_out() -> None:
    a2 = approval("2", decided_at=100)  # expires_at 1100
    young = plan(ModelState("cut", served("1"), V1, (a2,), LAST_V1, LAST_V1, now=1000.0))
    assert young.action == "finish"
    old = plan(ModelState("cut", served("1"), V1, (a2,), LAST_V1, LAST_V1, now=1200.0))
    assert (old.action, old.approval, old.too_old) == ("report", None, (a2,))
    assert "past its expiry" in old.reason
    ttl = plan(ModelState("cut", served("1"), V1, (a2,), LAST_V1, LAST_V1, 1200.0, 3600.0))
    assert ttl.action == "finish"  # GANOPS_APPROVAL_TTL after the decision: still young


def test_nothing_served_because_another_model_serves_is_left_alone() -> None:
    assert plan(ModelState("cut", None, V1, serves_other=True)).action == "agree"
    a2 = approval("2")  # an approved rollout still goes ahead, as the click would have
    assert plan(ModelState("cut", None, V1, (a2,), serves_other=True)).action == "finish"


def test_served_without_any_champion_is_only_reported() -> None:
    assert plan(ModelState("cut", served("4"), None)).action == "report"


def test_a_recorded_deploy_whose_alias_never_moved_is_adopted() -> None:
    a2 = approval("2")
    last = LastDeploy(a2, ok=True, aliases_moved=False)
    p = plan(ModelState("cut", served("2"), V1, (), last, last))
    assert (p.action, p.approval) == ("adopt", a2)
    moved = replace(last, aliases_moved=True)  # then someone moved it back by hand
    assert plan(ModelState("cut", served("2"), V1, (), moved, moved)).action == "report"


def test_older_in_flight_approvals_are_stale_and_only_the_newest_finishes() -> None:
    newest, older = approval("3", decided_at=200), approval("2", decided_at=100)
    p = plan(ModelState("cut", served("1"), V1, (newest, older)))
    assert (p.action, p.approval, p.stale) == ("finish", newest, (older,))


def test_an_in_flight_approval_overtaken_by_a_later_deploy_is_not_replayed() -> None:
    flying, later = approval("2", decided_at=100), approval("3", decided_at=200)
    v3 = Champion("3", "models:/ganops-cut/3")
    p = plan(ModelState("cut", served("3"), v3, (flying,), LastDeploy(later, True, True)))
    assert (p.action, p.stale) == ("agree", (flying,))


# --- the executor -----------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    server = LocalSlack(token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def registry() -> MemoryRegistry:
    reg = MemoryRegistry()
    reg.add("cut", "1", "2", "3")
    reg.aliases[("cut", "champion")] = "1"
    return reg


def make_book(
    tmp_path: Path, registry: MemoryRegistry, deployer: RecordingDeployer
) -> ApprovalBook:
    return ApprovalBook(Store(tmp_path), registry, deployer, approvers=frozenset({BOB}))


def deployed_before(book: ApprovalBook, version: str = "1", model_uri: str = "") -> Approval:
    """An approval of `version` whose deploy succeeded a minute ago: the last approved deploy."""
    uri = model_uri or f"models:/ganops-cut/{version}"
    a = book.request(model="cut", version=version, model_uri=uri, requested_by=ALICE)
    result = DeployResult(True, uri, version, None, False, 1.0, "rolled out 1/1 replicas")
    with book.store.tx() as conn:
        table.finish(conn, a.approval_id, "approved", BOB, book.clock() - 60, approvers=(BOB,))
        table.set_deploy_result(conn, a.approval_id, result)
    return a


def killed_mid_rollout(
    book: ApprovalBook,
    client: WebClient | None,
    version: str = "2",
    model_uri: str = "",
    decided_at: float | None = None,
) -> Approval:
    """An approved approval (with a card if `client`) and no deploy result: what SIGKILL
    leaves (decided now, unless `decided_at`)."""
    a = book.request(
        model="cut",
        version=version,
        model_uri=model_uri or f"models:/ganops-cut/{version}",
        requested_by=ALICE,
        channel=CHANNEL,
    )
    if client is not None:
        ts = str(client.chat_postMessage(channel=CHANNEL, text="card")["ts"])
        book.attach_message(a.approval_id, CHANNEL, ts)
    with book.store.tx() as conn:
        conn.execute(
            "UPDATE approvals SET state='approved', decided_by=?, decided_at=?, approvers=?"
            " WHERE approval_id=?",
            (BOB, book.clock() if decided_at is None else decided_at, f'["{BOB}"]', a.approval_id),
        )
    got = book.get(a.approval_id)
    assert got is not None
    return got


def reconcile(book: ApprovalBook, deployer: RecordingDeployer, client: WebClient) -> Reconciler:
    notify = slack_notifier(client, CHANNEL)
    return Reconciler(book, deployer, book.registry, notify=notify, models=("cut",))


def test_a_cut_short_rollout_is_finished_recorded_and_told(
    tmp_path: Path, registry: MemoryRegistry, slack: LocalSlack
) -> None:
    deployer = RecordingDeployer(serving={"cut": "1"})
    book = make_book(tmp_path, registry, deployer)
    client = WebClient(token=TOKEN, base_url=slack.url)
    a = killed_mid_rollout(book, client)
    [done] = reconcile(book, deployer, client).once()
    assert done.plan.action == "finish"
    assert deployer.calls == [("cut", "2", "models:/ganops-cut/2")]
    assert registry.aliases[("cut", "champion")] == "2" == deployer.serving["cut"]
    assert (done.served, done.champion, done.agree) == ("2", "2", True)
    result = book.deploy_result(a.approval_id)
    assert result is not None
    assert result.ok
    [row] = [r for r in book.store.list_audit(obj="cut") if r.action == "reconcile"]
    assert (row.outcome, row.detail["action"]) == ("ok", "finish")
    top = [m for m in slack.messages(CHANNEL) if "After a restart" in m.get("text", "")]
    assert [m.get("thread_ts") for m in top] == [None, a.message_ts]  # channel and thread
    assert "v2 serves and is champion" in top[0]["text"]
    assert reconcile(book, deployer, client).run()[0].plan.action == "agree"  # now settled


def test_a_finish_that_fails_puts_the_champion_back(
    tmp_path: Path, registry: MemoryRegistry, slack: LocalSlack
) -> None:
    class HalfRolled(RecordingDeployer):
        """The failed finish leaves v2 half rolled (a deployer that restored what it found)."""

        def deploy(self, model: str, version: str, model_uri: str):  # type: ignore[no-untyped-def]
            self.ok = version != "2"
            result = super().deploy(model, version, model_uri)
            if version == "2":
                self.serving[model] = "2"
            return result

        def served(self, model: str) -> Served | None:
            got = super().served(model)  # v2's pods never all got ready
            return replace(got, settled=False) if got and got.version == "2" else got

    deployer = HalfRolled(serving={"cut": "2"})
    book = make_book(tmp_path, registry, deployer)
    client = WebClient(token=TOKEN, base_url=slack.url)
    deployed_before(book, "1")
    a = killed_mid_rollout(book, client)
    rec = reconcile(book, deployer, client)
    [done] = rec.run()
    assert [c[1] for c in deployer.calls] == ["2", "1"]
    assert done.restore is not None
    assert done.restore.ok
    assert (done.served, done.champion) == ("1", "1")
    assert registry.aliases[("cut", "champion")] == "1"
    result = book.deploy_result(a.approval_id)
    assert result is not None
    assert not result.ok


def test_nothing_to_do_posts_nothing_and_runs_once(
    tmp_path: Path, registry: MemoryRegistry, slack: LocalSlack
) -> None:
    deployer = RecordingDeployer(serving={"cut": "1"})
    book = make_book(tmp_path, registry, deployer)
    client = WebClient(token=TOKEN, base_url=slack.url)
    rec = reconcile(book, deployer, client)
    assert [d.plan.action for d in rec.once()] == ["agree"]
    assert rec.once() == []
    assert deployer.calls == []
    assert slack.messages(CHANNEL) == []


def test_the_endpoint_of_one_model_is_not_taken_by_the_other(
    tmp_path: Path, registry: MemoryRegistry, slack: LocalSlack
) -> None:
    registry.add("cyclegan", "4")
    registry.aliases[("cyclegan", "champion")] = "4"
    deployer = RecordingDeployer(serving={"cut": "1"})
    book = make_book(tmp_path, registry, deployer)
    rec = Reconciler(book, deployer, registry, models=("cut", "cyclegan"))
    assert [d.plan.action for d in rec.run()] == ["agree", "agree"]
    assert deployer.calls == []


def test_an_unreadable_registry_decides_nothing(
    tmp_path: Path, registry: MemoryRegistry, slack: LocalSlack
) -> None:
    deployer = RecordingDeployer(serving={"cut": "5"})
    book = make_book(tmp_path, registry, deployer)
    registry.fail = True
    client = WebClient(token=TOKEN, base_url=slack.url)
    assert reconcile(book, deployer, client).run() == []
    assert deployer.calls == []
    [row] = book.store.list_audit(obj="cut")
    assert (row.action, row.outcome) == ("reconcile", "failed")


def test_a_rollout_this_process_claimed_after_it_started_is_not_replayed(
    tmp_path: Path, registry: MemoryRegistry, slack: LocalSlack
) -> None:
    """A click in the bot's first second is deploying when start-up reconciliation runs: it
    is this process's own rollout, not one a dead bot left behind."""
    deployer = RecordingDeployer(serving={"cut": "1"})
    book = make_book(tmp_path, registry, deployer)
    deployed_before(book, "1")
    rec = reconcile(book, deployer, WebClient(token=TOKEN, base_url=slack.url))
    a = killed_mid_rollout(book, None)
    with book.store.tx() as conn:  # what the click's decision did in its transaction
        conn.execute(
            "UPDATE approvals SET rollout_claimed_at=? WHERE approval_id=?",
            (rec.started + 1, a.approval_id),
        )
    [done] = rec.run()
    assert done.plan.action == "agree"
    assert deployer.calls == []
    with book.store.tx() as conn:  # claimed before the start: a dead process's, finished
        conn.execute(
            "UPDATE approvals SET rollout_claimed_at=? WHERE approval_id=?",
            (rec.started - 1, a.approval_id),
        )
    assert rec.run()[0].plan.action == "finish"
    assert deployer.calls == [("cut", "2", "models:/ganops-cut/2")]
