"""The `canaries` table: one row per approved deploy that went out as a canary.

A canary's id is its approval's id (what its buttons carry). Every move is one conditional
UPDATE on (state, step), so when the job on two replicas, a click and a restart race, one
caller owns each step. The row is the whole state of a canary: a restarted bot resumes it at
the same step, with the same step clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, cast

from ganops.bot.store import Store
from ganops.pipeline.db import Conn, Row

CanaryState = Literal["running", "promoted", "rolled_back", "superseded"]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS canaries (
        canary_id TEXT PRIMARY KEY,       -- the approval's id
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        model_uri TEXT NOT NULL,
        stable_version TEXT,              -- what took the rest of the traffic at the start
        steps TEXT NOT NULL,              -- JSON list of percents, as set when it started
        step INTEGER NOT NULL DEFAULT 0,  -- index into steps of the share it has now
        state TEXT NOT NULL,              -- running | promoted | rolled_back | superseded
        started_at REAL NOT NULL,
        step_started_at REAL NOT NULL,
        held INTEGER NOT NULL DEFAULT 0,  -- this step ended without enough traffic (told once)
        judgement TEXT,                   -- JSON: the last analysis, for the thread and resume
        ended_at REAL,
        ended_by TEXT,                    -- who ended it: a user id, or ganops
        reason TEXT,                      -- one line: why it ended
        channel TEXT,
        thread_ts TEXT                    -- the approval card's message: posts go in its thread
    )""",
    "CREATE INDEX IF NOT EXISTS canaries_by_state ON canaries(state, model)",
)


@dataclass(frozen=True)
class Canary:
    canary_id: str
    model: str
    version: str
    model_uri: str
    stable_version: str | None
    steps: tuple[int, ...]
    step: int
    state: CanaryState
    started_at: float
    step_started_at: float
    held: bool
    judgement: dict[str, Any] | None
    ended_at: float | None
    ended_by: str | None
    reason: str | None
    channel: str | None
    thread_ts: str | None

    @property
    def percent(self) -> int:
        return self.steps[self.step]

    @property
    def next_percent(self) -> int:
        return self.steps[min(self.step + 1, len(self.steps) - 1)]


def migrate(store: Store) -> None:
    store.migrate("canaries", 1, SCHEMA)


def to_canary(row: Row) -> Canary:
    judgement = row["judgement"]
    return Canary(
        canary_id=row["canary_id"],
        model=row["model"],
        version=row["version"],
        model_uri=row["model_uri"],
        stable_version=row["stable_version"],
        steps=tuple(json.loads(row["steps"])),
        step=int(row["step"]),
        state=cast(CanaryState, row["state"]),
        started_at=float(row["started_at"]),
        step_started_at=float(row["step_started_at"]),
        held=bool(row["held"]),
        judgement=json.loads(judgement) if judgement else None,
        ended_at=row["ended_at"],
        ended_by=row["ended_by"],
        reason=row["reason"],
        channel=row["channel"],
        thread_ts=row["thread_ts"],
    )


def insert(conn: Conn, c: Canary) -> None:
    conn.execute(
        "INSERT INTO canaries(canary_id, model, version, model_uri, stable_version, steps,"
        " step, state, started_at, step_started_at, channel, thread_ts)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
        (c.canary_id, c.model, c.version, c.model_uri, c.stable_version, json.dumps(c.steps),
         c.step, c.state, c.started_at, c.step_started_at, c.channel, c.thread_ts),
    )  # fmt: skip


def fetch(conn: Conn, canary_id: str) -> Canary | None:
    row = conn.execute("SELECT * FROM canaries WHERE canary_id=?", (canary_id,)).fetchone()
    return to_canary(row) if row is not None else None


def running(conn: Conn, model: str | None = None) -> list[Canary]:
    """Running canaries, oldest first (of one model, if given)."""
    where, args = "state='running'", ()
    if model is not None:
        where, args = "state='running' AND model=?", (model,)  # type: ignore[assignment]
    rows = conn.execute(
        f"SELECT * FROM canaries WHERE {where} ORDER BY started_at", args
    ).fetchall()
    return [to_canary(r) for r in rows]


def advance(conn: Conn, canary_id: str, step: int, now: float) -> bool:
    """step -> step + 1 with a fresh step clock, only if still running at `step`."""
    cur = conn.execute(
        "UPDATE canaries SET step=step+1, step_started_at=?, held=0"
        " WHERE canary_id=? AND state='running' AND step=?",
        (now, canary_id, step),
    )
    return cur.rowcount == 1


def hold(conn: Conn, canary_id: str, step: int, now: float) -> bool:
    """The step ended without a verdict: restart its clock. True the first time (tell once)."""
    cur = conn.execute(
        "UPDATE canaries SET step_started_at=?, held=1"
        " WHERE canary_id=? AND state='running' AND step=? AND held=0",
        (now, canary_id, step),
    )
    if cur.rowcount == 1:
        return True
    conn.execute(
        "UPDATE canaries SET step_started_at=? WHERE canary_id=? AND state='running' AND step=?",
        (now, canary_id, step),
    )
    return False


def save_judgement(conn: Conn, canary_id: str, judgement: dict[str, Any]) -> None:
    conn.execute(
        "UPDATE canaries SET judgement=? WHERE canary_id=?",
        (json.dumps(judgement, default=str), canary_id),
    )


def end(
    conn: Conn, canary_id: str, state: CanaryState, *, by: str, reason: str, now: float
) -> bool:
    """running -> `state`; True for the one caller that ended it."""
    cur = conn.execute(
        "UPDATE canaries SET state=?, ended_by=?, reason=?, ended_at=?"
        " WHERE canary_id=? AND state='running'",
        (state, by, reason, now, canary_id),
    )
    return cur.rowcount == 1
