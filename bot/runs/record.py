"""The bot's durable record of runs (`runs`) and of what it has posted (`posts`).

`runs` holds one row per run the bot started: who asked, where its message is, the last state
seen and text rendered, and whether its outcome has been fully posted (`settled`). A restarted
bot resumes watching every row that is not settled.

`posts` makes a post happen once across restarts: a key is claimed in the store before the
post and completed with the message ts after it. A claim without a ts means the bot died in
between; the poster then looks for the message in Slack (by its metadata) before posting again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ganops.bot.store import Store
from ganops.pipeline.db import Row

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL UNIQUE,
        model TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        requested_by TEXT NOT NULL,
        channel TEXT NOT NULL,
        thread_ts TEXT,
        message_ts TEXT,
        url TEXT,
        source TEXT NOT NULL DEFAULT '/retrain',
        state TEXT NOT NULL DEFAULT 'queued',
        last_rendered TEXT,
        approval_id TEXT,
        settled INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS runs_settled ON runs(settled, created_at)",
    """CREATE TABLE IF NOT EXISTS posts (
        key TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        thread_ts TEXT,
        ts TEXT,
        claimed_at REAL NOT NULL
    )""",
)


@dataclass(frozen=True)
class RunRow:
    run_id: str
    request_id: str
    model: str
    requested_by: str
    channel: str
    params: Mapping[str, Any] = field(default_factory=dict)
    thread_ts: str | None = None
    message_ts: str | None = None
    url: str | None = None
    source: str = "/retrain"
    state: str = "queued"
    last_rendered: str | None = None
    approval_id: str | None = None
    settled: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None


def _row(r: Row) -> RunRow:
    data = dict(r)
    data["params"] = json.loads(data["params"])
    data["settled"] = bool(data["settled"])
    return RunRow(**data)


class RunBook:
    """The `runs` and `posts` tables. Thread-safe; every call is its own short transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.migrate("bot.runs", 1, _SCHEMA)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # --- runs ---------------------------------------------------------------------------

    def add(self, row: RunRow) -> bool:
        """Insert `row`; False when its request_id (or run_id) is already recorded."""
        now = time.time()
        with self.store.connect() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO runs(run_id, request_id, model, params, requested_by, "
                "channel, thread_ts, url, source, state, created_at, updated_at) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    row.run_id,
                    row.request_id,
                    row.model,
                    json.dumps(dict(row.params), default=str),
                    row.requested_by,
                    row.channel,
                    row.thread_ts,
                    row.url,
                    row.source,
                    row.state,
                    row.created_at or now,
                    now,
                ),
            )
        return cur.rowcount == 1

    def get(self, run_id: str) -> RunRow | None:
        with self.store.connect() as conn:
            r = conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return None if r is None else _row(r)

    def by_request(self, request_id: str) -> RunRow | None:
        with self.store.connect() as conn:
            r = conn.execute("SELECT * FROM runs WHERE request_id=?", (request_id,)).fetchone()
        return None if r is None else _row(r)

    def unsettled(self) -> list[RunRow]:
        """Runs whose outcome is not fully posted yet: what a (re)started watcher follows."""
        with self.store.connect() as conn:
            rows = conn.execute("SELECT * FROM runs WHERE settled=0 ORDER BY created_at").fetchall()
        return [_row(r) for r in rows]

    def recent(self, limit: int = 10) -> list[RunRow]:
        with self.store.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_row(r) for r in rows]

    def update(self, run_id: str, **fields: Any) -> None:
        """Set columns of one run (message_ts, state, last_rendered, approval_id, settled…)."""
        allowed = {"message_ts", "state", "last_rendered", "approval_id", "settled", "finished_at"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update runs columns {sorted(unknown)}")
        sets = ", ".join(f"{k}=?" for k in fields)
        with self.store.connect() as conn:
            conn.execute(
                f"UPDATE runs SET {sets}, updated_at=? WHERE run_id=?",
                (*fields.values(), time.time(), run_id),
            )

    # --- posts ----------------------------------------------------------------------------

    def post_once(
        self,
        key: str,
        channel: str,
        thread_ts: str | None,
        post: Callable[[], str],
        find: Callable[[float], str | None],
    ) -> str:
        """Run `post` (which returns the message ts) at most once per `key`, across restarts.

        `find(since)` looks for an earlier post of this key made since a unix time; it is asked
        only when a claim has no ts, that is when a previous attempt died mid-way.
        """
        with self._lock(key):
            claimed_at, ts = self._claim(key, channel, thread_ts)
            if ts is not None:
                return ts
            if claimed_at is not None:
                found = find(claimed_at - 5.0)
                if found is not None:
                    self._complete(key, found)
                    return found
            ts = post()
            self._complete(key, ts)
            return ts

    def posted(self, key: str) -> str | None:
        with self.store.connect() as conn:
            r = conn.execute("SELECT ts FROM posts WHERE key=?", (key,)).fetchone()
        return None if r is None else r["ts"]

    def _claim(
        self, key: str, channel: str, thread_ts: str | None
    ) -> tuple[float | None, str | None]:
        """(claimed_at of an earlier claim or None, its ts or None); claims the key if new."""
        with self.store.tx() as conn:
            r = conn.execute("SELECT ts, claimed_at FROM posts WHERE key=?", (key,)).fetchone()
            if r is not None:
                return r["claimed_at"], r["ts"]
            conn.execute(
                "INSERT INTO posts(key, channel, thread_ts, claimed_at) VALUES(?,?,?,?)",
                (key, channel, thread_ts, time.time()),
            )
        return None, None

    def _complete(self, key: str, ts: str) -> None:
        with self.store.connect() as conn:
            conn.execute("UPDATE posts SET ts=? WHERE key=?", (ts, key))

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())
