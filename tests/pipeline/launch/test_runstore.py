"""The launchers' sqlite record: idempotent claims, the one-run-per-model rule, shared file."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from ganops.bot.store import Store
from ganops.pipeline.launch.runstore import RunRow, RunStore, claim_request
from ganops.pipeline.ports import ConcurrentRunError, InvalidParamsError, RunParams
from tests.fakes.postgres import backend_url

# The Kubeflow launcher keeps this table in the replicas' PostgreSQL: the claims hold there too.
both_backends = pytest.mark.usefixtures("both_backends")


def _claim(
    store: RunStore, request_id: str, model: str = "cut", dead: bool = False
) -> tuple[RunRow, bool]:
    counter = iter(range(1000))
    return claim_request(
        store,
        RunParams(model=model),
        request_id,
        "local",
        1,
        new_run_id=lambda: f"{request_id}-run-{next(counter)}",
        is_dead=lambda row: dead,
        mark_dead=lambda row: {"state": "failed", "error": "worker died"},
    )


@both_backends
def test_one_request_id_is_one_row_under_concurrent_claims(tmp_path: Path) -> None:
    store = RunStore(tmp_path, backend_url())
    results: list[tuple[RunRow, bool]] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        results.append(_claim(RunStore(tmp_path, backend_url()), "same"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(created for _, created in results) == 1
    assert {row.run_id for row, _ in results} == {"same-run-0"}
    assert [r.request_id for r in store.recent(10)] == ["same"]


@both_backends
def test_a_second_request_for_a_busy_model_is_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path, backend_url())
    first, _ = _claim(store, "a")
    with pytest.raises(ConcurrentRunError) as err:
        _claim(store, "b")
    assert err.value.run_id == first.run_id
    assert first.run_id in str(err.value)
    assert _claim(store, "c", model="cyclegan")[1]  # another model is free
    store.update("run_id", str(first.run_id), {"state": "gated"}, only_active=True)
    assert _claim(store, "d")[1]


@both_backends
def test_a_dead_run_does_not_block_the_model(tmp_path: Path) -> None:
    store = RunStore(tmp_path, backend_url())
    first, _ = _claim(store, "a")
    _second, created = _claim(store, "b", dead=True)
    assert created
    old = store.get(str(first.run_id))
    assert old is not None
    assert (old.state, old.error) == ("failed", "worker died")


@both_backends
def test_final_rows_are_not_overwritten_by_late_updates(tmp_path: Path) -> None:
    store = RunStore(tmp_path, backend_url())
    row, _ = _claim(store, "a")
    run_id = str(row.run_id)
    assert store.update("run_id", run_id, {"state": "cancelled"}, only_active=True)
    assert not store.update("run_id", run_id, {"state": "running"}, only_active=True)
    assert (store.get(run_id) or row).state == "cancelled"


def test_empty_request_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidParamsError, match="request id"):
        _claim(RunStore(tmp_path), " ")


def test_shares_the_state_db_with_the_bot(tmp_path: Path) -> None:
    Store(tmp_path)  # the bot's tables first, then ours, in the one file
    RunStore(tmp_path)
    Store(tmp_path)
    conn = sqlite3.connect(tmp_path / "ganops.db")
    owners = dict(conn.execute("SELECT owner, version FROM schema_versions").fetchall())
    assert owners["pipeline"] == 2  # version 2 added train_rate
    assert "audit" in owners
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    request_unique = [
        row for row in conn.execute("PRAGMA index_list(pipeline_runs)").fetchall() if row[2]
    ]
    assert request_unique  # the UNIQUE constraints exist at the SQL level
