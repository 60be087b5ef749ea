"""The one SQLite file under the state dir: connections, transactions, per-owner migrations.

The pipeline's launchers and the bot keep their tables in the same WAL-mode file
(`<state_dir>/ganops.db`). This module lives in `pipeline/` because the bot may import the
pipeline package, never the other way round; `bot.store.Store` and
`pipeline.launch.runstore.RunStore` both build on it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ganops.pipeline.db import Statements, statements_for

DB_NAME = "ganops.db"
_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class SqliteDb:
    """A handle on `<state_dir>/ganops.db`. Cheap to create; safe to share across threads.

    Connections are short-lived and per call: SQLite serialises writers, WAL lets readers run
    beside them, and `busy_timeout` turns contention into a short wait instead of an error.
    """

    dialect = "sqlite"

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path: Path | None = state_dir / DB_NAME
        with self.connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions "
                "(owner TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode; use `tx()` for atomic multi-statement work."""
        assert self.path is not None
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

    def migrate(self, owner: str, version: int, statements: Statements) -> None:
        """Apply `statements` once per owner and version. Statements must be idempotent
        (CREATE ... IF NOT EXISTS), since two processes may start at once."""
        with self.tx() as conn:
            row = conn.execute(
                "SELECT version FROM schema_versions WHERE owner=?", (owner,)
            ).fetchone()
            if row is not None and row["version"] >= version:
                return
            for statement in statements_for(self.dialect, statements):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_versions(owner, version) VALUES(?, ?) "
                "ON CONFLICT(owner) DO UPDATE SET version=excluded.version",
                (owner, version),
            )

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """One process uses a SQLite file (the bot's default): a lock in this process is
        the lock. (A transaction held for a whole rollout would block every other writer.)"""
        with _LOCKS_GUARD:
            lock = _LOCKS.setdefault((str(self.path), key), threading.Lock())
        with lock:
            yield

    def close(self) -> None:
        """Nothing to release: connections are per call."""
