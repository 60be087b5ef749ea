"""The launchers' durable record of runs: table `pipeline_runs` in `<state_dir>/ganops.db`.

One row per launch request. `request_id` is UNIQUE, which is what makes `launch()`
idempotent across threads, processes and restarts (KFP has no such key: kubeflow/pipelines
#10446). Connections are short-lived; WAL lets the bot read while a local worker writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ganops.pipeline.database import open_db
from ganops.pipeline.db import Conn, Row, integrity_errors
from ganops.pipeline.ports import (
    FINAL_STATES,
    PIPELINE_STEPS,
    ConcurrentRunError,
    InvalidParamsError,
    RunParams,
    RunState,
    RunStatus,
)
from ganops.pipeline.results import to_run_result

OWNER = "pipeline"
SCHEMA_VERSION = 1
# Later columns, one ALTER per version; each runs once, inside migrate's write lock.
_UPGRADES: tuple[tuple[int, str], ...] = (
    (2, "ALTER TABLE pipeline_runs ADD COLUMN train_rate REAL"),
)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS pipeline_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT UNIQUE,
        request_id TEXT NOT NULL UNIQUE,
        backend TEXT NOT NULL,
        model TEXT NOT NULL,
        params TEXT NOT NULL,
        state TEXT NOT NULL,
        current_step TEXT,
        steps_done INTEGER NOT NULL DEFAULT 0,
        train_step INTEGER,
        train_total INTEGER,
        losses TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        failed_step TEXT,
        url TEXT,
        result TEXT,
        pid INTEGER,
        pid_start TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS pipeline_runs_model_state ON pipeline_runs(model, state)",
)
_FINAL_SQL = "(" + ",".join(f"'{s}'" for s in sorted(FINAL_STATES)) + ")"
_JSON_COLUMNS = ("params", "losses", "result")


@dataclass(frozen=True)
class RunRow:
    run_id: str | None
    request_id: str
    backend: str
    model: str
    params: dict[str, Any]
    state: str
    created_at: float
    updated_at: float
    current_step: str | None = None
    steps_done: int = 0
    train_step: int | None = None
    train_total: int | None = None
    train_rate: float | None = None
    losses: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    failed_step: str | None = None
    url: str | None = None
    result: dict[str, Any] | None = None
    pid: int | None = None
    pid_start: str | None = None
    finished_at: float | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


class RunStore:
    """A handle on the `pipeline_runs` table. Cheap to create; safe across threads.

    The local launcher keeps it in the state dir's SQLite file, beside its workers and run
    folders (one machine). The Kubeflow launcher may keep it in the replicas' shared
    PostgreSQL (`database_url`), so that a request id maps to one KFP run whichever replica
    launches it.
    """

    def __init__(self, state_dir: Path, database_url: str | None = None) -> None:
        self.db = open_db(state_dir, database_url)
        self.path = self.db.path
        self.db.migrate(OWNER, SCHEMA_VERSION, _SCHEMA)
        for version, statement in _UPGRADES:
            self.db.migrate(OWNER, version, (statement,))

    def connect(self) -> AbstractContextManager[Conn]:
        return self.db.connect()

    def tx(self, urgent: bool = False) -> AbstractContextManager[Conn]:
        return self.db.tx(urgent)

    # --- reads ---------------------------------------------------------------------

    def by_request(self, conn: Conn, request_id: str) -> RunRow | None:
        row = conn.execute("SELECT * FROM pipeline_runs WHERE request_id=?", (request_id,))
        return _to_row(row.fetchone())

    def get(self, run_id: str) -> RunRow | None:
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM pipeline_runs WHERE run_id=?", (run_id,))
            return _to_row(row.fetchone())

    def active(self, conn: Conn, model: str) -> list[RunRow]:
        """Rows of `model` whose state is not final, oldest first."""
        rows = conn.execute(
            f"SELECT * FROM pipeline_runs WHERE model=? AND state NOT IN {_FINAL_SQL} ORDER BY id",
            (model,),
        )
        return [r for r in map(_to_row, rows.fetchall()) if r is not None]

    def recent(self, limit: int, backend: str | None = None) -> list[RunRow]:
        sql = "SELECT * FROM pipeline_runs"
        args: tuple[Any, ...] = ()
        if backend is not None:
            sql, args = sql + " WHERE backend=?", (backend,)
        with self.connect() as conn:
            rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [r for r in map(_to_row, rows) if r is not None and r.run_id]

    # --- writes --------------------------------------------------------------------

    def insert(self, conn: Conn, row: RunRow) -> None:
        values = _to_columns(row)
        names = ",".join(values)
        marks = ",".join("?" for _ in values)
        conn.execute(f"INSERT INTO pipeline_runs({names}) VALUES({marks})", tuple(values.values()))

    def update(
        self,
        key: str,
        value: str,
        changes: Mapping[str, Any],
        only_active: bool,
        conn: Conn | None = None,
    ) -> bool:
        """Update the row whose `key` (run_id or request_id) is `value`.

        With `only_active`, a final row is left alone (a cancel beats a late worker update).
        Pass `conn` to write inside a caller's transaction. Returns whether a row changed.
        """
        assert key in {"run_id", "request_id"}
        cols = {k: _encode(k, v) for k, v in changes.items()}
        cols.setdefault("updated_at", time.time())
        sets = ",".join(f"{k}=?" for k in cols)
        sql = f"UPDATE pipeline_runs SET {sets} WHERE {key}=?"
        if only_active:
            sql += f" AND state NOT IN {_FINAL_SQL}"
        if conn is not None:
            return conn.execute(sql, (*cols.values(), value)).rowcount > 0
        with self.connect() as own:
            return own.execute(sql, (*cols.values(), value)).rowcount > 0

    def delete_request(self, request_id: str) -> None:
        """Forget a request whose run was never created (a failed submission)."""
        with self.connect() as conn:
            conn.execute(
                "DELETE FROM pipeline_runs WHERE request_id=? AND run_id IS NULL", (request_id,)
            )


def claim_request(
    store: RunStore,
    params: RunParams,
    request_id: str,
    backend: str,
    max_active: int | None,
    new_run_id: Callable[[], str | None],
    is_dead: Callable[[RunRow], bool],
    mark_dead: Callable[[RunRow], Mapping[str, Any]],
) -> tuple[RunRow, bool]:
    """The row for `request_id`: the existing one (False), or a new queued one (True).

    One IMMEDIATE transaction makes check-then-insert atomic across processes; the UNIQUE
    constraint on request_id is the last line of defence. Active runs of the same model whose
    worker is dead are marked failed on the way, so they do not block new runs forever.

    Raises:
        InvalidParamsError: an empty request id.
        ConcurrentRunError: `max_active` runs of the model are still going.
    """
    if not request_id.strip():
        raise InvalidParamsError("the request id is empty")
    now = time.time()
    try:
        with store.tx() as conn:
            existing = store.by_request(conn, request_id)
            if existing is not None:
                return existing, False
            live = []
            for row in store.active(conn, params.model):
                if row.backend != backend:
                    continue
                if is_dead(row):
                    store.update("request_id", row.request_id, mark_dead(row), True, conn)
                else:
                    live.append(row)
            if max_active is not None and len(live) >= max_active:
                raise ConcurrentRunError(params.model, live[0].run_id or "(being submitted)")
            row = RunRow(
                run_id=new_run_id(),
                request_id=request_id,
                backend=backend,
                model=params.model,
                params=params.as_dict(),
                state="queued",
                created_at=now,
                updated_at=now,
            )
            store.insert(conn, row)
            return row, True
    except integrity_errors():
        with store.connect() as conn:
            existing = store.by_request(conn, request_id)
        if existing is None:
            raise
        return existing, False


def _encode(name: str, value: Any) -> Any:
    if name in _JSON_COLUMNS and value is not None:
        return json.dumps(value, default=str)
    return value


def _to_columns(row: RunRow) -> dict[str, Any]:
    return {name: _encode(name, getattr(row, name)) for name in RunRow.__dataclass_fields__}


def _to_row(row: Row | None) -> RunRow | None:
    if row is None:
        return None
    data = {k: row[k] for k in row.keys() if k in RunRow.__dataclass_fields__}  # noqa: SIM118 (a Row iterates values)
    for name in _JSON_COLUMNS:
        if data.get(name) is not None:
            data[name] = json.loads(data[name])
    data["losses"] = data.get("losses") or {}
    return RunRow(**data)


def row_to_status(row: RunRow) -> RunStatus:
    """The contract view of a stored run."""
    return RunStatus(
        run_id=row.run_id or "",
        state=cast(RunState, row.state),
        request_id=row.request_id,
        model=row.model,
        current_step=row.current_step,
        steps_done=row.steps_done,
        steps_total=len(PIPELINE_STEPS),
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        error=row.error,
        failed_step=row.failed_step,
        train_step=row.train_step,
        train_total=row.train_total,
        train_rate=row.train_rate,
        losses=dict(row.losses),
        url=row.url,
        params=dict(row.params),
        result=to_run_result(row.result),
    )
