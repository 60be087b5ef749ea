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
        store.migrate(OWNER, 1, SCHEMA)

    def enqueue(self, kind: str, key: str, payload: dict[str, Any]) -> bool:
        """One row for the command; False when `key` is already in (a Slack retry)."""
        with self.store.connect() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO outbox(key, kind, payload, created_at) VALUES(?,?,?,?)",
                (key, kind, json.dumps(payload, default=str), self.clock()),
            )
        return cur.rowcount == 1

    def claim(self, worker: str, lease_s: float) -> OutboxRow | None:
        """The oldest pending row that nobody holds a live lease on, now leased to `worker`."""
        now = self.clock()
        free = "state='pending' AND (lease_until IS NULL OR lease_until<?)"
        if self.store.dialect == "postgresql":
            with self.store.connect() as conn:
                r = conn.execute(
                    "UPDATE outbox SET claimed_by=?, lease_until=?, attempts=attempts+1 "
                    f"WHERE id=(SELECT id FROM outbox WHERE {free} ORDER BY id LIMIT 1 "
                    "FOR UPDATE SKIP LOCKED) RETURNING *",
                    (worker, now + lease_s, now),
                ).fetchone()
            return None if r is None else _row(r)
        with self.store.tx() as conn:
            r = conn.execute(
                f"SELECT * FROM outbox WHERE {free} ORDER BY id LIMIT 1", (now,)
            ).fetchone()
            if r is None:
                return None
            conn.execute(
                "UPDATE outbox SET claimed_by=?, lease_until=?, attempts=attempts+1 WHERE id=?",
                (worker, now + lease_s, r["id"]),
            )
        claimed = _row(r)
        return OutboxRow(**{**claimed.__dict__, "attempts": claimed.attempts + 1})

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

    def counts(self) -> dict[str, int]:
        with self.store.connect() as conn:
            rows = conn.execute("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state").fetchall()
        return {str(r["state"]): int(r["n"]) for r in rows}
