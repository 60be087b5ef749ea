"""The command outbox, leadership and the run book on both backends (real PostgreSQL)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from ganops.bot.leader import AdvisoryLeader, NotLeaderError, SoleLeader, fence, in_job
from ganops.bot.outbox import Outbox, OutboxRow
from ganops.bot.outbox_worker import OutboxWorker, outbox_key
from ganops.bot.runs.record import RunBook, RunRow
from ganops.bot.store import Store
from tests.fakes.postgres import backend_store
from tests.fakes.slack import eventually


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.usefixtures("both_backends")
def test_a_retried_request_is_one_row(tmp_path: Path) -> None:
    outbox = Outbox(backend_store(tmp_path))
    body = {"command": "/retrain", "text": "epochs=2", "trigger_id": "t-1", "user_id": "U1"}
    key = outbox_key("launch_retrain", body)
    assert outbox.enqueue("launch_retrain", key, body)
    assert not outbox.enqueue("launch_retrain", key, body)  # Slack's retry
    other = {**body, "trigger_id": "t-2"}  # the same text typed again: a new command
    assert outbox.enqueue("launch_retrain", outbox_key("launch_retrain", other), other)
    assert outbox.counts() == {"pending": 2}


@pytest.mark.usefixtures("both_backends")
def test_concurrent_workers_claim_each_row_once(tmp_path: Path) -> None:
    outbox = Outbox(backend_store(tmp_path))
    for i in range(30):
        outbox.enqueue("k", f"key-{i}", {"i": i})
    claimed: list[tuple[str, int]] = []
    guard = threading.Lock()

    def work(name: str) -> None:
        while (row := outbox.claim(name, lease_s=60)) is not None:
            with guard:
                claimed.append((name, row.payload["i"]))
            assert outbox.finish(row.id, name)

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(i for _, i in claimed) == list(range(30))
    assert outbox.counts() == {"done": 30}


@pytest.mark.usefixtures("both_backends")
def test_an_expired_claim_is_taken_over_and_the_old_worker_cannot_finish_it(
    tmp_path: Path,
) -> None:
    clock = Clock()
    outbox = Outbox(backend_store(tmp_path), clock=clock)
    outbox.enqueue("k", "key", {"x": 1})
    first = outbox.claim("dead", lease_s=30)
    assert first is not None
    assert first.attempts == 1
    assert outbox.claim("alive", lease_s=30) is None  # the lease still holds
    clock.now += 10
    outbox.extend([first.id], "dead", lease_s=30)  # a heartbeat moves the lease on
    clock.now += 25
    assert outbox.claim("alive", lease_s=30) is None
    clock.now += 10  # no heartbeat for 35 s: the claim has expired
    second = outbox.claim("alive", lease_s=30)
    assert second is not None
    assert (second.id, second.attempts) == (first.id, 2)
    assert not outbox.finish(first.id, "dead")  # the dead worker's late finish is ignored
    assert outbox.finish(second.id, "alive")
    assert outbox.counts() == {"done": 1}


def test_while_acks_come_in_the_worker_starts_one_row_at_a_time(tmp_path: Path) -> None:
    outbox = Outbox(Store(tmp_path))
    release = threading.Event()
    running: list[int] = []
    most = [0]
    guard = threading.Lock()

    def run(row: OutboxRow) -> None:
        with guard:
            running.append(row.id)
            most[0] = max(most[0], len(running))
        release.wait(10)
        with guard:
            running.remove(row.id)

    worker = OutboxWorker(outbox, run, threads=4, poll_s=0.05, quiet_s=0.2)
    worker.wake()  # an ack, as each enqueue below would be followed by
    worker.start()
    try:
        for i in range(3):
            outbox.enqueue("k", f"key-{i}", {"i": i})
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # acks keep arriving for a second
            worker.wake()
            time.sleep(0.02)
        assert most[0] == 1  # the first row started; the others waited for the acks to stop
        eventually(lambda: most[0] == 3)  # then the rest started together
        release.set()
        eventually(lambda: outbox.counts() == {"done": 3})
    finally:
        release.set()
        worker.stop()


@pytest.mark.usefixtures("both_backends")
def test_the_worker_runs_each_row_once_and_its_heartbeat_keeps_the_claim(tmp_path: Path) -> None:
    store = backend_store(tmp_path)
    ran: list[tuple[str, int]] = []

    def slow(name: str) -> OutboxWorker:
        def run(row: OutboxRow) -> None:
            ran.append((name, row.payload["i"]))
            time.sleep(1.0)  # longer than the lease: only the heartbeat keeps it claimed

        return OutboxWorker(Outbox(store), run, threads=2, lease_s=0.4, poll_s=0.05, name=name)

    workers = [slow("a").start(), slow("b").start()]
    outbox = Outbox(store)
    for i in range(4):
        outbox.enqueue("k", f"key-{i}", {"i": i})
        workers[0].wake()
    deadline = time.monotonic() + 20
    while outbox.counts() != {"done": 4} and time.monotonic() < deadline:
        time.sleep(0.05)
    for w in workers:
        w.stop()
    assert outbox.counts() == {"done": 4}
    assert sorted(i for _, i in ran) == [0, 1, 2, 3]  # none stolen and run twice


def test_one_replica_leads_and_another_takes_over_when_its_connection_dies(
    database_url: str,
) -> None:
    a, b = AdvisoryLeader(database_url), AdvisoryLeader(database_url)
    assert a.is_leader()
    assert not b.is_leader()
    assert a.is_leader()  # still: checked on its own connection
    # The leader's connection dies (a killed pod; here the server ends its session).
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name='ganops-leader' AND pid IN "
            "(SELECT pid FROM pg_locks WHERE locktype='advisory' AND granted)"
        )
    time.sleep(0.2)
    assert b.is_leader()
    assert not a.is_leader()  # the fencing check notices it lost the lock
    b.resign()
    assert a.is_leader()
    a.resign()


def test_fencing_stops_a_job_on_a_replica_that_does_not_lead(database_url: str) -> None:
    leader, follower = AdvisoryLeader(database_url), AdvisoryLeader(database_url)
    assert leader.is_leader()
    fence(follower)  # outside a job (a listener, an outbox row) every replica may act
    in_job("run-watch")
    try:
        fence(leader)
        with pytest.raises(NotLeaderError, match="run-watch"):
            fence(follower)
        fence(SoleLeader())  # SQLite: the one process always leads
    finally:
        in_job(None)
        leader.resign()
        follower.resign()


def test_replicas_starting_together_migrate_once(database_url: str, tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            store = Store(tmp_path, database_url)
            RunBook(store)
            Outbox(store)
            store.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT owner, version FROM schema_versions ORDER BY owner").fetchall()
    assert ("outbox", 1) in rows
    assert ("bot.runs", 1) in rows


@pytest.mark.usefixtures("both_backends")
def test_the_run_book_on_both_backends(tmp_path: Path) -> None:
    book = RunBook(backend_store(tmp_path))
    row = RunRow(run_id="r1", request_id="q1", model="cut", requested_by="U1", channel="C1")
    assert book.add(row)
    assert not book.add(row)  # INSERT OR IGNORE / ON CONFLICT DO NOTHING
    book.update("r1", state="running", settled=True, finished_at=1.5)
    got = book.get("r1")
    assert got is not None
    assert (got.state, got.settled, got.finished_at) == ("running", True, 1.5)
    assert book.unsettled() == []
    posts: list[str] = []
    ts = book.post_once("k", "C1", None, lambda: posts.append("x") or "1.0", lambda _: None)
    assert book.post_once("k", "C1", None, lambda: "2.0", lambda _: None) == ts == "1.0"
    assert posts == ["x"]


@pytest.mark.usefixtures("both_backends")
def test_post_once_waits_for_a_live_poster_and_takes_over_a_dead_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ganops.bot.runs import record

    book = RunBook(backend_store(tmp_path))
    posts: list[str] = []

    def post(ts: str) -> Callable[[], str]:
        def do() -> str:
            time.sleep(0.3)  # long enough for the others to find the claim in progress
            posts.append(ts)
            return ts

        return do

    # Threads (or replicas) racing on one key: one posts, the others get its ts.
    got: list[str] = []
    racers = [
        threading.Thread(
            target=lambda n=n: got.append(
                book.post_once("k1", "C", None, post(f"{n}.0"), lambda _: None)
            )
        )
        for n in range(4)
    ]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    assert len(posts) == 1
    assert got == posts * 4

    # Another replica's claim, still in progress: wait for its ts, post nothing.
    with book.store.connect() as conn:
        conn.execute(
            "INSERT INTO posts(key, channel, claimed_at, claimed_by) VALUES(?,?,?,?)",
            ("k2", "C", time.time(), "other-pod:7"),
        )
    threading.Timer(0.5, lambda: book._complete("k2", "9.0")).start()
    assert book.post_once("k2", "C", None, post("x"), lambda _: None) == "9.0"
    assert len(posts) == 1

    # A claim whose process is gone (this host, no such pid): taken over at once.
    with book.store.connect() as conn:
        conn.execute(
            "INSERT INTO posts(key, channel, claimed_at, claimed_by) VALUES(?,?,?,?)",
            ("k3", "C", time.time(), f"{socket.gethostname()}:{2**22 + 17}"),
        )
    assert book.post_once("k3", "C", None, post("3.0"), lambda _: None) == "3.0"

    # Another host's claim that never completes: taken over once it is older than the wait.
    monkeypatch.setattr(record, "POST_CLAIM_WAIT_S", 0.5)
    with book.store.connect() as conn:
        conn.execute(
            "INSERT INTO posts(key, channel, claimed_at, claimed_by) VALUES(?,?,?,?)",
            ("k4", "C", time.time(), "gone-pod:7"),
        )
    asked: list[float] = []
    started = time.monotonic()
    ts = book.post_once("k4", "C", None, post("4.0"), lambda since: asked.append(since) or None)
    assert ts == "4.0"
    assert time.monotonic() - started >= 0.5
    assert len(asked) == 1  # it looked for the dead poster's message first


def test_the_state_gauges_count_from_postgresql_off_the_scrape_path(
    database_url: str, tmp_path: Path
) -> None:
    from ganops.bot.metrics import BotMetrics

    store = Store(tmp_path, database_url)
    book = RunBook(store)
    book.add(RunRow(run_id="r1", request_id="q1", model="cut", requested_by="U", channel="C"))
    book.add(RunRow(run_id="r2", request_id="q2", model="cut", requested_by="U", channel="C"))
    book.update("r2", state="failed")
    metrics = BotMetrics()
    metrics.watch_counts(store.count_by_state, every_s=0.1)

    def scraped() -> str:
        return metrics.exposition().decode()

    deadline = time.monotonic() + 10
    while 'ganops_bot_runs{state="failed"} 1.0' not in scraped() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 'ganops_bot_runs{state="queued"} 1.0' in scraped()
    assert 'ganops_bot_runs{state="failed"} 1.0' in scraped()
    with pytest.raises(ValueError, match="audit"):
        store.count_by_state("audit")


@pytest.mark.usefixtures("both_backends")
def test_finished_rows_are_pruned_after_a_week_pending_ones_never(tmp_path: Path) -> None:
    clock = Clock()
    outbox = Outbox(backend_store(tmp_path), clock=clock)
    for key in ("done", "failed", "pending"):
        outbox.enqueue("k", key, {})
    for key in ("done", "failed"):
        row = outbox.claim("w", lease_s=30)
        assert row is not None
        outbox.finish(row.id, "w", error=None if key == "done" else "boom")
    clock.now += 6 * 24 * 3600
    assert outbox.prune() == 0
    clock.now += 2 * 24 * 3600
    assert outbox.prune() == 2
    assert outbox.counts() == {"pending": 1}
