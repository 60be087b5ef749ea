"""`SqliteDb` keeps a finished connection for the thread's next call, and nothing else changes:
a nested call still gets a connection of its own, a failed transaction leaves nothing open on
the connection it hands on, and `close()` leaves the handle usable."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from ganops.pipeline.sqlite import SqliteDb


@pytest.fixture
def db(tmp_path: Path) -> SqliteDb:
    db = SqliteDb(tmp_path)
    with db.tx() as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
    return db


def _raw(db: SqliteDb) -> sqlite3.Connection:
    with db.connect() as conn:
        return conn._conn


def test_one_thread_reuses_its_connection(db: SqliteDb) -> None:
    assert _raw(db) is _raw(db)


def test_other_threads_get_their_own(db: SqliteDb) -> None:
    seen: list[sqlite3.Connection] = []
    t = threading.Thread(target=lambda: seen.append(_raw(db)))
    t.start()
    t.join()
    assert len(seen) == 1
    assert seen[0] is not _raw(db)


def test_a_read_nested_in_a_transaction_does_not_see_its_uncommitted_rows(db: SqliteDb) -> None:
    with db.tx() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        with db.connect() as other:
            assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1


def test_a_failed_transaction_is_rolled_back_and_the_next_one_works(db: SqliteDb) -> None:
    with pytest.raises(RuntimeError), db.tx() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("boom")
    with db.tx() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
    with db.connect() as conn:
        assert [r[0] for r in conn.execute("SELECT v FROM t")] == [2]


def test_a_connection_left_inside_a_transaction_is_not_handed_on(db: SqliteDb) -> None:
    with db.connect() as conn:
        conn.execute("BEGIN")
        left = conn._conn
    assert _raw(db) is not left


def test_close_closes_the_kept_connections_and_the_handle_still_works(db: SqliteDb) -> None:
    kept = _raw(db)
    db.close()
    with pytest.raises(sqlite3.ProgrammingError):
        kept.execute("SELECT 1")
    with db.tx() as conn:
        conn.execute("INSERT INTO t VALUES (3)")
    with db.connect() as conn:
        assert conn.execute("SELECT v FROM t").fetchone()[0] == 3
