"""The `alarms` table: one row per drift episode (model, version, and the time it opened).

At most one open episode per model version (a partial unique index says so), so that the
watcher, the alarm buttons and a restarted bot all find the same episode and the same card.
Every change of state is audited.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping

from ganops.bot.blocks.alarms import AlarmView
from ganops.bot.ports import DriftAlert
from ganops.bot.store import Store
from ganops.pipeline.db import Conn, Row

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS alarms (
        episode_id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        state TEXT NOT NULL,            -- firing | snoozed | ignored | resolved
        score REAL NOT NULL,
        peak_score REAL NOT NULL,
        features TEXT NOT NULL DEFAULT '{}',
        channel TEXT,
        message_ts TEXT,
        opened_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        resolved_at REAL,
        snoozed_until REAL,
        acted_by TEXT,
        retrain_run_id TEXT,
        last_rendered TEXT
    )""",
    # At most one open episode per model version: the dedup rule, enforced by the store.
    """CREATE UNIQUE INDEX IF NOT EXISTS alarms_one_open
       ON alarms(model, version) WHERE state != 'resolved'""",
)

# When the episode's drift score stopped coming (NULL while it comes): a column of its own,
# added to stores made before it.
_NO_DATA = ("ALTER TABLE alarms ADD COLUMN no_data_since REAL",)
# How an episode ended or what its retrain came to, beside the row (a table of its own, so
# the migration stays `CREATE ... IF NOT EXISTS`): captured inputs the retrain learnt, the
# line the card shows, and how many retrains the gate (or a failure) turned down.
_OUTCOMES = (
    """CREATE TABLE IF NOT EXISTS alarm_outcomes (
        episode_id TEXT PRIMARY KEY,
        captured INTEGER,
        outcome TEXT,
        attempts INTEGER NOT NULL DEFAULT 0
    )""",
)
_SELECT = "SELECT * FROM alarms LEFT JOIN alarm_outcomes o USING (episode_id)"

OPEN_STATES = ("firing", "snoozed", "ignored")


class AlarmBook:
    """The `alarms` table: open, update, act on and resolve drift episodes."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        store.migrate("alarms", 1, _SCHEMA)
        store.migrate("alarms.no_data", 1, _NO_DATA)
        store.migrate("alarm_outcomes", 1, _OUTCOMES)

    def open_episodes(self) -> list[AlarmView]:
        with self.store.connect() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE state != 'resolved' ORDER BY opened_at"
            ).fetchall()
        return [_view(r) for r in rows]

    def get(self, episode_id: str) -> AlarmView | None:
        row = self._row(episode_id)
        return _view(row) if row is not None else None

    def row_meta(self, episode_id: str) -> tuple[str | None, str | None, str | None]:
        """(channel, message_ts, last_rendered) of an episode."""
        row = self._row(episode_id)
        if row is None:
            return None, None, None
        return row["channel"], row["message_ts"], row["last_rendered"]

    def _row(self, episode_id: str) -> Row | None:
        with self.store.connect() as conn:
            row: Row | None = conn.execute(
                f"{_SELECT} WHERE episode_id=?", (episode_id,)
            ).fetchone()
        return row

    def open(self, alert: DriftAlert, channel: str) -> AlarmView:
        """Open an episode for the alert, or return the one already open (dedup)."""
        now = self.clock()
        seed = f"{alert.model}:{alert.version}:{now}".encode()
        episode_id = f"drift-{alert.model}-v{alert.version}-{hashlib.sha256(seed).hexdigest()[:8]}"
        with self.store.tx() as conn:
            row = conn.execute(
                "SELECT episode_id FROM alarms WHERE model=? AND version=? AND state!='resolved'",
                (alert.model, alert.version),
            ).fetchone()
            if row is not None:
                episode_id = row["episode_id"]
            else:
                conn.execute(
                    "INSERT INTO alarms(episode_id, model, version, state, score, peak_score,"
                    " features, channel, opened_at, updated_at)"
                    " VALUES(?,?,?,'firing',?,?,?,?,?,?)",
                    (
                        episode_id,
                        alert.model,
                        alert.version,
                        alert.score,
                        alert.score,
                        json.dumps(dict(alert.features)),
                        channel,
                        alert.active_since or now,
                        now,
                    ),
                )
                self.store.audit(
                    "ganops", "drift_alarm", episode_id, "opened", {"score": alert.score}, conn
                )
        view = self.get(episode_id)
        assert view is not None
        return view

    def update_score(self, episode_id: str, score: float, features: Mapping[str, float]) -> None:
        """A fresh reading; an episode that had no data continues (and says so once)."""
        with self.store.tx() as conn:
            cur = conn.execute(
                "UPDATE alarms SET no_data_since=NULL WHERE episode_id=?"
                " AND no_data_since IS NOT NULL",
                (episode_id,),
            )
            if cur.rowcount == 1:
                detail = {"score": score}
                self.store.audit("ganops", "drift_alarm", episode_id, "data_back", detail, conn)
            conn.execute(
                "UPDATE alarms SET score=?, peak_score=MAX(peak_score, ?), features=?,"
                " updated_at=? WHERE episode_id=?",
                (score, score, json.dumps(dict(features)), self.clock(), episode_id),
            )

    def mark_no_data(self, episode_id: str, since: float | None = None) -> bool:
        """The score stopped coming: the card keeps its last values and says "no data".
        True the first time (until data comes back)."""
        since = since if since is not None else self.clock()
        with self.store.tx() as conn:
            cur = conn.execute(
                "UPDATE alarms SET no_data_since=? WHERE episode_id=? AND no_data_since IS NULL"
                " AND state!='resolved'",
                (since, episode_id),
            )
            if cur.rowcount == 1:
                detail = {"since": since}
                self.store.audit("ganops", "drift_alarm", episode_id, "no_data", detail, conn)
        return cur.rowcount == 1

    def set_message(self, episode_id: str, channel: str, ts: str) -> None:
        with self.store.connect() as conn:
            conn.execute(
                "UPDATE alarms SET channel=?, message_ts=? WHERE episode_id=?",
                (channel, ts, episode_id),
            )

    def set_rendered(self, episode_id: str, rendered: str) -> None:
        with self.store.connect() as conn:
            conn.execute(
                "UPDATE alarms SET last_rendered=? WHERE episode_id=?", (rendered, episode_id)
            )

    def resolve(
        self, episode_id: str, note: str | None = None, details: Mapping[str, object] | None = None
    ) -> bool:
        """Close the episode; `note` (e.g. the deploy that fixed it) goes on the card."""
        with self.store.tx() as conn:
            cur = conn.execute(
                "UPDATE alarms SET state='resolved', resolved_at=? "
                "WHERE episode_id=? AND state!='resolved'",
                (self.clock(), episode_id),
            )
            if cur.rowcount == 1:
                if note is not None:
                    _set_outcome(conn, episode_id, note)
                audit = {"note": note, **(details or {})} if note else None
                self.store.audit("ganops", "drift_alarm", episode_id, "resolved", audit, conn)
        return cur.rowcount == 1

    def note_outcome(self, episode_id: str, note: str) -> bool:
        """Set the card's outcome line; False when it already says that."""
        with self.store.tx() as conn:
            row = conn.execute(
                "SELECT outcome FROM alarm_outcomes WHERE episode_id=?", (episode_id,)
            ).fetchone()
            if row is not None and row["outcome"] == note:
                return False
            _set_outcome(conn, episode_id, note)
        return True

    def set_captured(self, episode_id: str, captured: int) -> None:
        """How many captured inputs the episode's retrain trains on."""
        with self.store.tx() as conn:
            conn.execute(
                "INSERT INTO alarm_outcomes(episode_id, captured) VALUES(?, ?) "
                "ON CONFLICT(episode_id) DO UPDATE SET captured=excluded.captured",
                (episode_id, captured),
            )

    def retrain_turned_down(self, episode_id: str, run_id: str, note: str) -> bool:
        """The retrain ended without a challenger to deploy: forget it (the buttons return,
        and the next click is a new attempt), keep the note, audit it."""
        with self.store.tx() as conn:
            cur = conn.execute(
                "UPDATE alarms SET retrain_run_id=NULL WHERE episode_id=? AND retrain_run_id=?",
                (episode_id, run_id),
            )
            if cur.rowcount != 1:
                return False
            _set_outcome(conn, episode_id, note)
            conn.execute(
                "UPDATE alarm_outcomes SET attempts=attempts+1 WHERE episode_id=?", (episode_id,)
            )
            self.store.audit(
                "ganops", "drift_retrain", episode_id, "turned_down", {"run_id": run_id}, conn
            )
        return True

    def snooze(self, episode_id: str, user: str, seconds: float) -> bool:
        return self._act(
            episode_id,
            user,
            "snoozed",
            "UPDATE alarms SET state='snoozed', snoozed_until=?, acted_by=? "
            "WHERE episode_id=? AND state IN ('firing','snoozed')",
            (self.clock() + seconds, user, episode_id),
        )

    def ignore(self, episode_id: str, user: str) -> bool:
        return self._act(
            episode_id,
            user,
            "ignored",
            "UPDATE alarms SET state='ignored', acted_by=? "
            "WHERE episode_id=? AND state IN ('firing','snoozed')",
            (user, episode_id),
        )

    def unsnooze_due(self) -> list[str]:
        """Snoozes that ended: back to firing. Returns their episode ids."""
        now = self.clock()
        with self.store.tx() as conn:
            rows = conn.execute(
                "SELECT episode_id FROM alarms WHERE state='snoozed' AND snoozed_until<=?", (now,)
            ).fetchall()
            conn.execute(
                "UPDATE alarms SET state='firing', snoozed_until=NULL "
                "WHERE state='snoozed' AND snoozed_until<=?",
                (now,),
            )
        return [r["episode_id"] for r in rows]

    def set_retrain(self, episode_id: str, user: str, run_id: str) -> bool:
        """Record the episode's retrain run once; False when one is already recorded."""
        with self.store.tx() as conn:
            cur = conn.execute(
                "UPDATE alarms SET retrain_run_id=?, acted_by=? "
                "WHERE episode_id=? AND retrain_run_id IS NULL",
                (run_id, user, episode_id),
            )
            if cur.rowcount == 1:
                self.store.audit(
                    user, "drift_retrain", episode_id, "launched", {"run_id": run_id}, conn
                )
        return cur.rowcount == 1

    def _act(
        self, episode_id: str, user: str, outcome: str, sql: str, args: tuple[object, ...]
    ) -> bool:
        with self.store.tx() as conn:
            cur = conn.execute(sql, args)
            ok = cur.rowcount == 1
            self.store.audit(
                user,
                "drift_alarm",
                episode_id,
                outcome if ok else f"{outcome}:no-op",
                None,
                conn,
                path="button",  # the alarm card's buttons are the only way to act on one
            )
        return ok


def _set_outcome(conn: Conn, episode_id: str, note: str) -> None:
    conn.execute(
        "INSERT INTO alarm_outcomes(episode_id, outcome) VALUES(?, ?) "
        "ON CONFLICT(episode_id) DO UPDATE SET outcome=excluded.outcome",
        (episode_id, note),
    )


def _view(row: Row) -> AlarmView:
    return AlarmView(
        episode_id=row["episode_id"],
        model=row["model"],
        version=row["version"],
        state=row["state"],
        score=row["score"],
        peak_score=row["peak_score"],
        features=json.loads(row["features"]),
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
        resolved_at=row["resolved_at"],
        snoozed_until=row["snoozed_until"],
        acted_by=row["acted_by"],
        retrain_run_id=row["retrain_run_id"],
        no_data_since=row["no_data_since"],
        captured=row["captured"],
        outcome=row["outcome"],
        attempts=row["attempts"] or 0,
    )
