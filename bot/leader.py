"""Which replica runs the scheduled jobs: the one holding a PostgreSQL advisory lock.

Why an advisory lock and not a Kubernetes Lease: the replicas already share the database,
and a session lock lives exactly as long as its connection. A replica that dies (SIGKILL, OOM,
a drained node) loses the lock when PostgreSQL sees its connection close: at once for a
killed process, within the TCP keepalive time (`KEEPALIVE_OPTIONS`, 25 s) for a node that
vanished. No clocks, no renew loop, no RBAC, and it works outside Kubernetes too.

`is_leader()` is also the fencing check: it asks the database over the lock's own connection,
so a leader that lost its connection (and with it the lock) learns so before its next side
effect, not after. With SQLite there is one process, and it always leads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Protocol

log = logging.getLogger("ganops.bot")

# pg_try_advisory_lock's key for "the scheduler" (ASCII "ganlead").
LEADER_LOCK = 0x67616E6C656164
# The server drops a silent peer after 10 + 3 x 5 s; a standby then takes over (< 30 s).
KEEPALIVE_OPTIONS = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
)


class Leadership(Protocol):
    def is_leader(self) -> bool: ...

    def resign(self) -> None: ...


class SoleLeader:
    """SQLite: one process, always the leader."""

    def is_leader(self) -> bool:
        return True

    def resign(self) -> None:
        pass


class AdvisoryLeader:
    """Leadership over a dedicated connection holding `pg_try_advisory_lock(LEADER_LOCK)`."""

    def __init__(self, url: str, *, key: int = LEADER_LOCK, timeout_s: float = 5.0) -> None:
        self.url = url
        self.key = key
        self.timeout_s = timeout_s
        self._conn: Any = None
        self._guard = threading.Lock()

    def is_leader(self) -> bool:
        """True while this replica holds the lock (checked on its connection now); a
        follower tries to take it on every call."""
        with self._guard:
            if self._conn is not None and self._alive():
                return True
            return self._try_acquire()

    def resign(self) -> None:
        with self._guard:
            self._drop()

    def _alive(self) -> bool:
        try:
            self._conn.execute("SELECT 1").fetchone()
            return True
        except Exception as exc:  # any failure means the session (and the lock) may be gone
            log.warning("leadership lost: %s", exc)
            self._drop()
            return False

    def _try_acquire(self) -> bool:
        import psycopg

        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=int(self.timeout_s),
                options=KEEPALIVE_OPTIONS,
                application_name="ganops-leader",
            )
        except psycopg.Error as exc:
            log.warning("cannot reach the database for leadership: %s", exc)
            return False
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error as exc:
            log.warning("cannot take leadership: %s", exc)
            conn.close()
            return False
        if not (row and row[0]):
            conn.close()
            return False
        log.info("this replica now leads the scheduled jobs")
        self._conn = conn
        return True

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a dead connection: nothing to release
                conn.close()


def make_leadership(database_url: str | None) -> Leadership:
    return AdvisoryLeader(database_url) if database_url else SoleLeader()


class NotLeaderError(RuntimeError):
    """A scheduled job's side effect on a replica that no longer leads."""


_JOB = threading.local()


def in_job(name: str | None) -> None:
    """Mark this thread as running the scheduled job `name` (None: done)."""
    _JOB.name = name


def fence(leader: Leadership) -> None:
    """The fencing check: inside a scheduled job, raise unless this replica still leads.
    Outside a job (a listener, an outbox row) every replica may act."""
    name = getattr(_JOB, "name", None)
    if name is not None and not leader.is_leader():
        raise NotLeaderError(f"job {name}: this replica no longer leads; side effect skipped")
