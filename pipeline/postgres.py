"""`PostgresDb`: the `Db` port on PostgreSQL (psycopg 3 and a connection pool).

Replicas share it. `tx()` takes one transaction-scoped advisory lock first, which is what
SQLite's `BEGIN IMMEDIATE` gave every read-then-write sequence: they cannot interleave, on
one replica or several, and the lock goes with the transaction even when a replica dies.
Migrations run inside such a transaction, so two replicas starting at once apply each
version once. Hot paths that must not queue behind it (the outbox's claim) use row locks
(`FOR UPDATE SKIP LOCKED`) on `connect()` instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ganops.pipeline.db import Cursor, Statements, apply_once, translate

# pg_advisory_xact_lock's key for "the write lock" (ASCII "ganops").
WRITE_LOCK = 0x67616E6F7073
POOL_MAX = 16
CONNECT_TIMEOUT_S = 30.0


class PgConn:
    """A pooled psycopg connection that speaks the SQLite spelling of our SQL."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        # Booleans go to INTEGER columns (SQLite has no boolean): send them as 0/1.
        args = [int(p) if isinstance(p, bool) else p for p in parameters]
        cur: Cursor = self.raw.execute(translate(sql, bool(args)), args or None)
        return cur


class PostgresDb:
    """A pool of connections to `url`. Safe to share across threads; `close()` at exit."""

    dialect = "postgresql"
    path: Path | None = None

    def __init__(self, url: str, *, max_size: int = POOL_MAX) -> None:
        self.url = url
        # One plain connection first: a wrong host, password or database fails start-up at
        # once with libpq's message (the pool would retry it until its timeout).
        psycopg.connect(url, connect_timeout=int(CONNECT_TIMEOUT_S)).close()
        self.pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            # A connection that died with a database restart is replaced, not handed out.
            check=ConnectionPool.check_connection,
            timeout=CONNECT_TIMEOUT_S,
            open=False,
            name="ganops",
        )
        self.pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        with self.tx() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions "
                "(owner TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )

    @contextmanager
    def connect(self) -> Iterator[PgConn]:
        """An autocommit connection from the pool."""
        with self.pool.connection() as conn:
            yield PgConn(conn)

    @contextmanager
    def tx(self, urgent: bool = False) -> Iterator[PgConn]:
        """A transaction holding the write lock (see the module docstring). `urgent` means
        nothing here: PostgreSQL queues lock waiters fairly, without polling."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield PgConn(conn)

    def migrate(self, owner: str, version: int, statements: Statements) -> None:
        """Apply `statements` once per owner and version, under the write lock (DDL is
        transactional here: a replica killed mid-way leaves nothing half-applied)."""
        with self.tx() as conn:
            apply_once(conn, self.dialect, owner, version, statements)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """`pg_advisory_xact_lock` on a connection of its own, for as long as the block runs:
        a replica that dies mid-way drops its connection, and with it the lock."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
            yield

    @contextmanager
    def try_lock(self, key: str) -> Iterator[bool]:
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0)) AS got", (key,)
            ).fetchone()
            yield bool(row and row["got"])

    def close(self) -> None:
        self.pool.close()
