from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ganops.pipeline.db import database_errors
from tests.fakes.postgres import backend_store

# Each test runs on SQLite and on a real PostgreSQL (tests/conftest.py: both_backends).
pytestmark = pytest.mark.usefixtures("both_backends")


def test_audit_is_append_only(tmp_path: Path) -> None:
    store = backend_store(tmp_path)
    store.audit("U1", "approve", "apr-1", "refused", {"why": "not an approver"})
    with store.connect() as conn, pytest.raises(database_errors(), match="append-only"):
        conn.execute("UPDATE audit SET outcome='ok'")
    with store.connect() as conn, pytest.raises(database_errors(), match="append-only"):
        conn.execute("DELETE FROM audit")
    [row] = store.list_audit()
    assert (row.actor, row.action, row.object, row.outcome) == ("U1", "approve", "apr-1", "refused")
    assert row.detail == {"why": "not an approver"}


def test_list_audit_is_newest_first_and_filters(tmp_path: Path) -> None:
    store = backend_store(tmp_path)
    for i in range(5):
        store.audit("U1", "click", f"obj-{i % 2}", "ok")
    rows = store.list_audit(limit=3)
    assert [r.id for r in rows] == sorted((r.id for r in rows), reverse=True)
    assert len(rows) == 3
    assert {r.object for r in store.list_audit(obj="obj-1")} == {"obj-1"}


def test_migrations_run_once_and_survive_reopen(tmp_path: Path) -> None:
    stmt = "CREATE TABLE IF NOT EXISTS t (x INTEGER)"
    store = backend_store(tmp_path)
    store.migrate("t", 1, [stmt, "INSERT INTO t VALUES (1)"])
    store.migrate("t", 1, [stmt, "INSERT INTO t VALUES (1)"])
    reopened = backend_store(tmp_path)
    reopened.migrate("t", 1, [stmt, "INSERT INTO t VALUES (1)"])
    with reopened.connect() as conn:
        calls = conn.execute("SELECT COUNT(*) AS n FROM t").fetchone()["n"]
    assert calls == 1


def test_tx_rolls_back_on_error(tmp_path: Path) -> None:
    store = backend_store(tmp_path)
    store.migrate("t", 1, ["CREATE TABLE IF NOT EXISTS t (x INTEGER)"])
    with pytest.raises(RuntimeError), store.tx() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("boom")
    with store.connect() as conn:
        assert conn.execute("SELECT COUNT(*) AS n FROM t").fetchone()["n"] == 0


def test_concurrent_writers_do_not_lose_rows(tmp_path: Path) -> None:
    store = backend_store(tmp_path)

    def write(n: int) -> None:
        for i in range(20):
            store.audit(f"U{n}", "click", f"o{i}", "ok")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.list_audit(limit=1000)) == 160
