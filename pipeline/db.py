"""The bot's one database, SQLite or PostgreSQL, behind one small port.

Every owner of tables (the bot's runs, approvals, alarms, outbox; the Kubeflow launcher's
`pipeline_runs`) talks to a `Db`: `connect()` (autocommit), `tx()` (a write transaction that
serialises with every other `tx()`, SQLite's `BEGIN IMMEDIATE`), `migrate(owner, version,
statements)` and `dialect`. The SQL is written once, in SQLite's spelling; `PostgresDb` turns
the few differences into PostgreSQL's (`translate`, `translate_ddl`) so that no module forks.

`ganops.pipeline.database.open_db(state_dir, database_url)` picks one: PostgreSQL when a
`postgresql://` URL is given, else the SQLite file under the state dir. (It lives there, not
here, because both implementations import this module.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

# A fetched row: `sqlite3.Row` or a dict; both are read as `row["column"]`.
Row = Any

# Migrations: one portable list (SQLite's spelling, translated for PostgreSQL), or a list
# per dialect where the two cannot share a spelling (triggers).
Statements = Sequence[str] | Mapping[str, Sequence[str]]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Conn(Protocol):
    """What the table modules use of a connection: `execute` with `?` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


class Db(Protocol):
    dialect: str  # "sqlite" | "postgresql"
    path: Path | None  # the SQLite file; None on PostgreSQL

    def connect(self) -> AbstractContextManager[Conn]: ...

    def tx(self, urgent: bool = False) -> AbstractContextManager[Conn]:
        """A write transaction; `urgent` ones (an ack waiting) are served first."""
        ...

    def migrate(self, owner: str, version: int, statements: Statements) -> None: ...

    def lock(self, key: str) -> AbstractContextManager[None]:
        """Held by one holder at a time across every process on this database (for a
        rollout's duration); released when its holder dies."""
        ...

    def try_lock(self, key: str) -> AbstractContextManager[bool]:
        """`lock(key)` if nobody holds it now (True inside), else at once False."""
        ...

    def close(self) -> None: ...


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and str(url).split("://", 1)[0] in {"postgresql", "postgres"}


def statements_for(dialect: str, statements: Statements) -> list[str]:
    if isinstance(statements, Mapping):
        return list(statements[dialect])
    if dialect == "postgresql":
        return [translate_ddl(s) for s in statements]
    return list(statements)


def apply_once(conn: Conn, dialect: str, owner: str, version: int, statements: Statements) -> None:
    """One migration, inside the caller's write transaction: `statements` run unless the
    owner's recorded schema version is already `version` or later, which then becomes it."""
    row = conn.execute("SELECT version FROM schema_versions WHERE owner=?", (owner,)).fetchone()
    if row is not None and row["version"] >= version:
        return
    for statement in statements_for(dialect, statements):
        conn.execute(statement)
    conn.execute(
        "INSERT INTO schema_versions(owner, version) VALUES(?, ?) "
        "ON CONFLICT(owner) DO UPDATE SET version=excluded.version",
        (owner, version),
    )


def integrity_errors() -> tuple[type[Exception], ...]:
    """A duplicate key, in either backend (what `INSERT` races end in)."""
    import sqlite3

    errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)
    try:
        import psycopg
    except ImportError:  # the SQLite-only install
        return errors
    return (*errors, psycopg.IntegrityError)


def database_errors() -> tuple[type[Exception], ...]:
    """Any failure of the database itself (gone, refused, locked), in either backend."""
    import sqlite3

    errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        return errors
    return (*errors, psycopg.Error, psycopg_pool.PoolTimeout)


_WHERE_INT = re.compile(r"WHERE ([01])(?=\s|$)")
_MAX2 = re.compile(r"\bMAX\((?=\w+,)")
_DDL_WORDS = (
    ("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY"),
    # PostgreSQL's REAL is 4 bytes: a unix time would lose its minutes.
    (" REAL", " DOUBLE PRECISION"),
)


def translate_ddl(sql: str) -> str:
    """SQLite's DDL in PostgreSQL's words (only what our schemas use)."""
    for sqlite_word, pg_word in _DDL_WORDS:
        sql = sql.replace(sqlite_word, pg_word)
    return sql


def translate(sql: str, with_params: bool) -> str:
    """SQLite's DML in PostgreSQL's spelling: `?` -> `%s`, `INSERT OR IGNORE` -> `ON CONFLICT
    DO NOTHING`, `rowid` -> `ctid` (insertion order, used only as a tie-break)."""
    if "INSERT OR IGNORE INTO" in sql:
        sql = sql.replace("INSERT OR IGNORE INTO", "INSERT INTO") + " ON CONFLICT DO NOTHING"
    sql = sql.replace(" rowid ", " ctid ")
    # SQLite's integers as conditions ("WHERE 1", "WHERE 0 AND ...") and its two-argument MAX.
    sql = _WHERE_INT.sub(lambda m: "WHERE " + ("TRUE" if m.group(1) == "1" else "FALSE"), sql)
    sql = _MAX2.sub("GREATEST(", sql)
    if with_params:
        # No `?` in our SQL's literals, so each one is a placeholder.
        sql = sql.replace("%", "%%").replace("?", "%s")
    return sql
