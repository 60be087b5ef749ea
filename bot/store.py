"""The bot's one durable store: a SQLite file in WAL mode under GANOPS_STATE_DIR.

Each owner (the bot's runs, approvals, alarms; the pipeline's launcher) creates its own
tables through `migrate`, so a fresh state dir and an old one converge to the same schema.
Connections are short-lived and per call: SQLite serialises writers, WAL lets readers run
beside them, and `busy_timeout` turns contention into a short wait instead of an error.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_NAME = "ganops.db"

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


@dataclass(frozen=True)
class AuditRow:
    id: int
    ts: float
    actor: str
    action: str
    object: str
    outcome: str
    detail: dict[str, Any]


class Store:
    """A handle on `<state_dir>/ganops.db`. Cheap to create; safe to share across threads."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / DB_NAME
        with self.connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions "
                "(owner TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
        self.migrate("audit", 1, _AUDIT_SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode; use `tx()` for atomic multi-statement work."""
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: it takes the write lock up front, so read-then-write
        sequences inside it cannot interleave with another writer."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def migrate(self, owner: str, version: int, statements: Sequence[str]) -> None:
        """Apply `statements` once per owner and version. Statements must be idempotent
        (CREATE ... IF NOT EXISTS), since two processes may start at once."""
        with self.tx() as conn:
            row = conn.execute(
                "SELECT version FROM schema_versions WHERE owner=?", (owner,)
            ).fetchone()
            if row is not None and row["version"] >= version:
                return
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_versions(owner, version) VALUES(?, ?) "
                "ON CONFLICT(owner) DO UPDATE SET version=excluded.version",
                (owner, version),
            )

    # --- audit ---------------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        obj: str,
        outcome: str,
        detail: dict[str, Any] | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> None:
        """Append one audit row. Pass `conn` to write inside a caller's transaction."""
        row = (time.time(), actor, action, obj, outcome, json.dumps(detail or {}, default=str))
        sql = "INSERT INTO audit(ts, actor, action, object, outcome, detail) VALUES(?,?,?,?,?,?)"
        if conn is not None:
            conn.execute(sql, row)
            return
        with self.connect() as own:
            own.execute(sql, row)

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
            )
            for r in rows
        ]
