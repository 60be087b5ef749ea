"""The command outbox: every acked command and click, durable before Slack hears the ack.

An ack writes one row (the Slack payload and which lazy listener it is for) and returns. Any
replica's `OutboxWorker` claims rows one at a time and carries them out; a claim is a lease
(`lease_until`) that the worker extends while the work runs, so when a replica dies after
its ack, or halfway through the work, the row's lease runs out and another replica runs it.
The work behind each row is idempotent (request ids, compare-and-set decisions), so a row run
twice after a crash does what running it once would have done.

PostgreSQL claims with `FOR UPDATE SKIP LOCKED` (replicas never wait on each other's rows);
SQLite, one process, claims inside its write transaction.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from ganops.bot.store import Store
from ganops.pipeline.db import Row

OWNER = "outbox"
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,            -- Slack's retries of one request share it
        kind TEXT NOT NULL,                  -- the lazy listener to run
        payload TEXT NOT NULL,               -- the Slack body (user, channel, response_url...)
        state TEXT NOT NULL DEFAULT 'pending',  -- pending | done | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        claimed_by TEXT,
        lease_until REAL,
        created_at REAL NOT NULL,
        done_at REAL,
        error TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(state, id)",
)
KEEP_S = 7 * 24 * 3600.0  # finished rows are kept this long (for "what happened to my click")
# Past this many claims a row is given up (a payload that kills its worker every time).
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class OutboxRow:
    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: float


class _Pending:
    """One ack's row waiting for the group commit."""

    def __init__(self, args: tuple[str, str, str, float]) -> None:
        self.args = args
        self.done = False
        self.new = False
        self.error: BaseException | None = None

    def result(self) -> bool:
        if self.error is not None:
            raise self.error
        return self.new


def _row(r: Row) -> OutboxRow:
    return OutboxRow(
        id=int(r["id"]),
        key=r["key"],
        kind=r["kind"],
        payload=json.loads(r["payload"]),
        attempts=int(r["attempts"]),
        created_at=float(r["created_at"]),
    )


class Outbox:
    """The `outbox` table. Thread-safe; shared by every replica on one database."""

    def __init__(self, store: Store, clock: Any = time.time) -> None:
        self.store = store
        self.clock = clock
        self._queue: list[_Pending] = []
        self._writing = False
        self._cv = threading.Condition()
        store.migrate(OWNER, 1, SCHEMA)

    def enqueue(self, kind: str, key: str, payload: dict[str, Any]) -> bool:
        """One row for the command, committed before this returns; False when `key` is
        already in (a Slack retry). Concurrent acks share one transaction (group commit):
        the first to arrive writes every row queued by then, the others wait for it."""
        item = _Pending((key, kind, json.dumps(payload, default=str), self.clock()))
        with self._cv:
            self._queue.append(item)
            while not item.done and self._writing:
                self._cv.wait()
            if item.done:
                return item.result()
            self._writing = True
            batch, self._queue = self._queue, []
        try:
            self._write(batch)
        except BaseException as exc:
            for pending in batch:
                pending.error = exc
            raise
        finally:
            with self._cv:
                for pending in batch:
                    pending.done = True
                self._writing = False
                self._cv.notify_all()
        return item.result()

    def _write(self, batch: list[_Pending]) -> None:
        """One statement for the batch. On PostgreSQL it needs no lock beyond its rows; on
        SQLite it queues for the write lock with this process's other writers (`tx`)."""
        values = ",".join("(?,?,?,?)" for _ in batch)
        sql = (
            f"INSERT INTO outbox(key, kind, payload, created_at) VALUES {values} "
            "ON CONFLICT DO NOTHING RETURNING key"
        )
        args = [a for pending in batch for a in pending.args]
        if self.store.dialect == "postgresql":
            opened = self.store.connect()
        else:
            opened = self.store.tx(urgent=True)
        with opened as conn:
            inserted = {r["key"] for r in conn.execute(sql, args).fetchall()}
        for pending in batch:  # a key twice in one batch (Slack's retry): the first is new
            pending.new = pending.args[0] in inserted
            inserted.discard(pending.args[0])

    def claim(self, worker: str, lease_s: float) -> OutboxRow | None:
        """The oldest pending row that nobody holds a live lease on, now leased to `worker`."""
        rows = self.claim_many(worker, lease_s, 1)
        return rows[0] if rows else None

    def claim_many(self, worker: str, lease_s: float, limit: int) -> list[OutboxRow]:
        """Up to `limit` of the oldest free rows, oldest first, in one statement or
        transaction, leased to `worker`."""
        now = self.clock()
        free = "state='pending' AND (lease_until IS NULL OR lease_until<?)"
        if self.store.dialect == "postgresql":
            with self.store.connect() as conn:
                rows = conn.execute(
                    "UPDATE outbox SET claimed_by=?, lease_until=?, attempts=attempts+1 "
                    f"WHERE id IN (SELECT id FROM outbox WHERE {free} ORDER BY id LIMIT ? "
                    "FOR UPDATE SKIP LOCKED) RETURNING *",
                    (worker, now + lease_s, now, limit),
                ).fetchall()
            return sorted((_row(r) for r in rows), key=lambda r: r.id)
        with self.store.tx() as conn:
            rows = conn.execute(
                f"SELECT * FROM outbox WHERE {free} ORDER BY id LIMIT ?", (now, limit)
            ).fetchall()
            for r in rows:
                conn.execute(
                    "UPDATE outbox SET claimed_by=?, lease_until=?, attempts=attempts+1 WHERE id=?",
                    (worker, now + lease_s, r["id"]),
                )
        return [
            OutboxRow(**{**claimed.__dict__, "attempts": claimed.attempts + 1})
            for claimed in map(_row, rows)
        ]

    def extend(self, ids: list[int], worker: str, lease_s: float) -> None:
        """The heartbeat: keep `worker`'s leases on `ids` alive while their work runs."""
        until = self.clock() + lease_s
        with self.store.connect() as conn:
            for row_id in ids:
                conn.execute(
                    "UPDATE outbox SET lease_until=? WHERE id=? AND claimed_by=? "
                    "AND state='pending'",
                    (until, row_id, worker),
                )

    def finish(self, row_id: int, worker: str, error: str | None = None) -> bool:
        """done (or failed, with `error`); False if another worker took the row over."""
        state = "done" if error is None else "failed"
        with self.store.connect() as conn:
            cur = conn.execute(
                "UPDATE outbox SET state=?, done_at=?, error=? "
                "WHERE id=? AND claimed_by=? AND state='pending'",
                (state, self.clock(), error, row_id, worker),
            )
        return cur.rowcount == 1

    def release(self, row_id: int, worker: str) -> None:
        """Give a claim back at once (this replica is stopping)."""
        with self.store.connect() as conn:
            conn.execute(
                "UPDATE outbox SET lease_until=NULL, claimed_by=NULL "
                "WHERE id=? AND claimed_by=? AND state='pending'",
                (row_id, worker),
            )

    def prune(self, older_than_s: float = KEEP_S) -> int:
        """Forget rows finished more than `older_than_s` ago (the audit log keeps what they
        did); pending ones are never pruned. Returns how many went."""
        with self.store.connect() as conn:
            cur = conn.execute(
                "DELETE FROM outbox WHERE state!='pending' AND done_at<?",
                (self.clock() - older_than_s,),
            )
        return cur.rowcount

    def counts(self) -> dict[str, int]:
        with self.store.connect() as conn:
            rows = conn.execute("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state").fetchall()
        return {str(r["state"]): int(r["n"]) for r in rows}
