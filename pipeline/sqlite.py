"""The one SQLite file under the state dir: connections, transactions, per-owner migrations.

The pipeline's launchers and the bot keep their tables in the same WAL-mode file
(`<state_dir>/ganops.db`). This module lives in `pipeline/` because the bot may import the
pipeline package, never the other way round; `bot.store.Store` and
`pipeline.launch.runstore.RunStore` both build on it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ganops.pipeline.db import Statements, apply_once

DB_NAME = "ganops.db"
_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class _Writer:
    """This process's queue for a SQLite file's write lock. SQLite's own busy handler makes
    waiting writers poll with sleeps of up to 100 ms, so under a burst (50 acks, 8 workers)
    a writer could starve for seconds; here they wait on a condition, and `urgent` ones (an
    ack's outbox row, which Slack is waiting for) go first."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._held = False
        self._urgent = 0

    @contextmanager
    def hold(self, urgent: bool = False) -> Iterator[None]:
        with self._cv:
            self._urgent += urgent
            try:
                while self._held or (not urgent and self._urgent):
                    self._cv.wait()
            finally:
                self._urgent -= urgent
            self._held = True
        try:
            yield
        finally:
            with self._cv:
                self._held = False
                self._cv.notify_all()


_WRITERS: dict[str, _Writer] = {}
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _writer(path: Path | None) -> _Writer:
    with _LOCKS_GUARD:
        return _WRITERS.setdefault(str(path), _Writer())


class _Autocommit:
    """A connection outside `tx()`: its writes (one statement each) queue on `_Writer`
    too; reads go straight through (WAL readers never wait)."""

    def __init__(self, conn: sqlite3.Connection, writer: _Writer) -> None:
        self._conn = conn
        self._writer = writer

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> sqlite3.Cursor:
        if sql.lstrip()[:7].upper().startswith(_WRITES):
            with self._writer.hold():
                return self._conn.execute(sql, parameters)
        return self._conn.execute(sql, parameters)


class SqliteDb:
    """A handle on `<state_dir>/ganops.db`. Cheap to create; safe to share across threads.

    Each call gets a connection of its own: SQLite serialises writers, WAL lets readers run
    beside them, and `busy_timeout` turns contention into a short wait instead of an error.
    A finished connection is kept for the next call on the same thread rather than closed:
    opening one and closing the file's last one (which checkpoints the WAL) cost more than
    the ack's whole insert. A nested call still gets a second connection, as it always did.
    """

    dialect = "sqlite"

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path: Path | None = state_dir / DB_NAME
        self._idle = threading.local()  # this thread's finished connections
        self._all: list[sqlite3.Connection] = []  # every one opened, for close()
        self._all_guard = threading.Lock()
        with self.connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions "
                "(owner TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )

    @contextmanager
    def connect(self) -> Iterator[_Autocommit]:
        """A connection in autocommit mode; use `tx()` for atomic multi-statement work."""
        with self._open() as conn:
            yield _Autocommit(conn, _writer(self.path))

    @contextmanager
    def _open(self) -> Iterator[sqlite3.Connection]:
        idle: list[sqlite3.Connection] = self._idle.__dict__.setdefault("conns", [])
        conn = idle.pop() if idle else self._new_connection()
        try:
            yield conn
        finally:
            if conn.in_transaction:  # never hand on a connection with work half done
                conn.close()
            else:
                idle.append(conn)

    def _new_connection(self) -> sqlite3.Connection:
        assert self.path is not None
        # check_same_thread off only so close() may close it; one thread uses it at a time.
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        with self._all_guard:
            self._all.append(conn)
        return conn

    @contextmanager
    def tx(self, urgent: bool = False) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: it takes the write lock up front, so read-then-write
        sequences inside it cannot interleave with another writer. The threads of this
        process queue for it on `_Writer` first (`urgent`: ahead of the others)."""
        with _writer(self.path).hold(urgent), self._open() as conn:
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
            apply_once(conn, self.dialect, owner, version, statements)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """One process uses a SQLite file (the bot's default): a lock in this process is
        the lock. (A transaction held for a whole rollout would block every other writer.)"""
        with _LOCKS_GUARD:
            lock = _LOCKS.setdefault((str(self.path), key), threading.Lock())
        with lock:
            yield

    @contextmanager
    def try_lock(self, key: str) -> Iterator[bool]:
        with _LOCKS_GUARD:
            lock = _LOCKS.setdefault((str(self.path), key), threading.Lock())
        acquired = lock.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()

    def close(self) -> None:
        """Close every connection this handle kept (a call still running keeps its own
        until it ends: closing it under that call would break it)."""
        with self._all_guard:
            conns, self._all = self._all, []
            self._idle = threading.local()  # no thread reuses what is closed below
        for conn in conns:
            if not conn.in_transaction:
                conn.close()
