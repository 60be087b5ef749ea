"""The bot's one durable store: a SQLite file in WAL mode under GANOPS_STATE_DIR, or the
PostgreSQL database at GANOPS_DATABASE_URL that several replicas share.

Each owner (the bot's runs, approvals, alarms; the pipeline's launcher) creates its own
tables through `migrate`, so a fresh state dir and an old one converge to the same schema.
Connections, transactions and migrations come from a `ganops.pipeline.db.Db` (SQLite or
PostgreSQL; the SQL is written once, in SQLite's spelling); this module adds the audit log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganops.pipeline.database import open_db
from ganops.pipeline.db import Conn, Db, Statements

__all__ = ["AuditRow", "Store"]

_AUDIT_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        object TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}'
    )""",
    # Append-only: the store refuses edits and deletes of audit rows.
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
       BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
       BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""",
)
# Version 2: how each action reached the bot (button, slash, modal, cli, policy, job).
# ALTER is not idempotent, but `migrate` runs a version's statements once, under the write lock.
_AUDIT_V2 = (*_AUDIT_SCHEMA, "ALTER TABLE audit ADD COLUMN path TEXT")
_AUDIT_V2_PG = (
    """CREATE TABLE IF NOT EXISTS audit (
        id BIGSERIAL PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        object TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}',
        path TEXT
    )""",
    """CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
       $$ BEGIN RAISE EXCEPTION 'audit is append-only'; END $$""",
    """CREATE OR REPLACE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
       FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
)
AUDIT_MIGRATION: Statements = {"sqlite": _AUDIT_V2, "postgresql": _AUDIT_V2_PG}


@dataclass(frozen=True)
class AuditRow:
    id: int
    ts: float
    actor: str
    action: str
    object: str
    outcome: str
    detail: dict[str, Any]
    path: str | None = None  # None for rows written before paths were recorded


class Store:
    """The bot's database (`<state_dir>/ganops.db`, or `database_url`) with the append-only
    audit log. Cheap to share across threads; `close()` releases a PostgreSQL pool."""

    def __init__(
        self, state_dir: Path, database_url: str | None = None, *, db: Db | None = None
    ) -> None:
        self.db: Db = db if db is not None else open_db(state_dir, database_url)
        self.dialect = self.db.dialect
        self.path = self.db.path  # None on PostgreSQL
        self.migrate("audit", 2, AUDIT_MIGRATION)  # a fresh file and a version-1 one alike

    @contextmanager
    def connect(self) -> Iterator[Conn]:
        """An autocommit connection; use `tx()` for atomic multi-statement work."""
        with self.db.connect() as conn:
            yield conn

    @contextmanager
    def tx(self, urgent: bool = False) -> Iterator[Conn]:
        """A write transaction that no other `tx()`, on any replica, interleaves with;
        `urgent` (an ack's write) goes ahead of this process's other writers."""
        with self.db.tx(urgent) as conn:
            yield conn

    def migrate(self, owner: str, version: int, statements: Statements) -> None:
        self.db.migrate(owner, version, statements)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """A named lock shared by every replica (a model's rollouts)."""
        with self.db.lock(key):
            yield

    @contextmanager
    def try_lock(self, key: str) -> Iterator[bool]:
        """`lock(key)` if it is free now (True), else False at once: "is anyone at it?"."""
        with self.db.try_lock(key) as got:
            yield got

    def close(self) -> None:
        self.db.close()

    # --- audit ---------------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        obj: str,
        outcome: str,
        detail: dict[str, Any] | None = None,
        conn: Conn | None = None,
        *,
        path: str | None = None,
    ) -> None:
        """Append one audit row. Pass `conn` to write inside a caller's transaction; `path`
        says how the action came (`bot.policy.AuditPath`)."""
        detail_json = json.dumps(detail or {}, default=str)
        row = (time.time(), actor, action, obj, outcome, detail_json, path)
        sql = (
            "INSERT INTO audit(ts, actor, action, object, outcome, detail, path) "
            "VALUES(?,?,?,?,?,?,?)"
        )
        if conn is not None:
            conn.execute(sql, row)
            return
        with self.connect() as own:
            own.execute(sql, row)

    def count_by_state(self, table: str) -> list[tuple[str, int]]:
        """(state, rows) of `runs` or `approvals`, for the bot's gauges."""
        if table not in {"runs", "approvals"}:
            raise ValueError(f"no state counts for {table!r}")
        with self.connect() as conn:
            rows = conn.execute(
                f"SELECT state, COUNT(*) AS n FROM {table} GROUP BY state"
            ).fetchall()
        return [(str(r["state"]), int(r["n"])) for r in rows]

    def list_audit(self, limit: int = 20, obj: str | None = None) -> list[AuditRow]:
        """The newest `limit` rows, newest first; optionally only those about `obj`."""
        sql = "SELECT * FROM audit"
        args: tuple[Any, ...] = ()
        if obj is not None:
            sql += " WHERE object=?"
            args = (obj,)
        sql += " ORDER BY id DESC LIMIT ?"
        with self.connect() as conn:
            rows = conn.execute(sql, (*args, limit)).fetchall()
        return [
            AuditRow(
                id=r["id"],
                ts=r["ts"],
                actor=r["actor"],
                action=r["action"],
                object=r["object"],
                outcome=r["outcome"],
                detail=json.loads(r["detail"]),
                path=r["path"],
            )
            for r in rows
        ]
