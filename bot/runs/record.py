"""The bot's durable record of runs (`runs`) and of what it has posted (`posts`).

`runs` holds one row per run the bot started: who asked, where its message is, the last state
seen and text rendered, and whether its outcome has been fully posted (`settled`). A restarted
bot resumes watching every row that is not settled.

`posts` makes a post happen once across restarts: a key is claimed in the store before the
post and completed with the message ts after it; the key is unique, so of two replicas (or
threads) one claims and the other waits for its ts. A claim without a ts whose poster died
(its process is gone, or the claim is older than `POST_CLAIM_WAIT_S`) is taken over: the
poster then looks for the message in Slack (by its metadata) before posting again.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import Counter
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


# A claim without a ts from another process is taken over after this long (a post, with
# Slack's retries, is done well within it).
POST_CLAIM_WAIT_S = 30.0
POST_CLAIM_POLL_S = 0.1
_POSTING: Counter[str] = Counter()  # keys this process is posting now, by how many threads
_POSTING_GUARD = threading.Lock()
_CLAIMED_BY = ("ALTER TABLE posts ADD COLUMN claimed_by TEXT",)


def process_name() -> str:
    """Who claims a post: this process, as host:pid (a pod's hostname is its name)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


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
        store.migrate("bot.runs.posts_claimed_by", 1, _CLAIMED_BY)

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
        """Run `post` (which returns the message ts) at most once per `key`, across restarts
        and replicas: the claim is a row in `posts` (the key is unique), not a lock here.

        A claim without a ts is either in progress (another thread or replica posting now:
        wait for its ts) or left by a poster that died (its process is gone, or it is older
        than `POST_CLAIM_WAIT_S`): then `find(since)` looks for the earlier post by its
        metadata before posting again.
        """
        with _POSTING_GUARD:
            _POSTING[key] += 1  # this process's claims are "in progress" until done
        try:
            claimed_at, ts = self._claim_or_wait(key, channel, thread_ts)
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
        finally:
            with _POSTING_GUARD:
                _POSTING[key] -= 1
                if _POSTING[key] <= 0:
                    del _POSTING[key]

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
                "INSERT INTO posts(key, channel, thread_ts, claimed_at, claimed_by) "
                "VALUES(?,?,?,?,?)",
                (key, channel, thread_ts, time.time(), process_name()),
            )
        return None, None

    def _claim_or_wait(
        self, key: str, channel: str, thread_ts: str | None
    ) -> tuple[float | None, str | None]:
        """`_claim`, but an earlier claim still in progress is waited for, and a dead one is
        taken over (re-claimed under a compare-and-set, so one taker wins)."""
        while True:
            claimed_at, ts = self._claim(key, channel, thread_ts)
            if claimed_at is None or ts is not None:
                return claimed_at, ts
            with self.store.connect() as conn:
                r = conn.execute(
                    "SELECT claimed_by, claimed_at, ts FROM posts WHERE key=?", (key,)
                ).fetchone()
            if r["ts"] is not None:
                return r["claimed_at"], r["ts"]
            if self._abandoned(r["claimed_by"], r["claimed_at"], key):
                with self.store.connect() as conn:
                    cur = conn.execute(
                        "UPDATE posts SET claimed_by=?, claimed_at=? "
                        "WHERE key=? AND ts IS NULL AND claimed_at=?",
                        (process_name(), time.time(), key, r["claimed_at"]),
                    )
                if cur.rowcount == 1:
                    return r["claimed_at"], None
            time.sleep(POST_CLAIM_POLL_S)

    def _abandoned(self, claimed_by: str | None, claimed_at: float, key: str) -> bool:
        if claimed_by is None:  # a claim from before claims were signed: its poster is gone
            return True
        if claimed_by == process_name():
            # Ours: in progress on another thread (wait), or an attempt that failed here.
            with _POSTING_GUARD:
                return _POSTING[key] <= 1  # only the calling thread is posting it now
        host, _, pid = claimed_by.rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
            return True
        return time.time() - claimed_at > POST_CLAIM_WAIT_S

    def _complete(self, key: str, ts: str) -> None:
        with self.store.connect() as conn:
            conn.execute("UPDATE posts SET ts=? WHERE key=?", (ts, key))
