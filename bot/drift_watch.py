"""The drift watcher: polls Prometheus, and keeps one alarm card per model version and episode.

An episode opens when GanInputDrift starts firing for (model, version) and closes when it
stops. Its card is posted once, updated in place while it fires, and marked resolved when it
ends. Every fact lives in the `alarms` table, so a restarted bot finds the open episodes and
keeps updating the same cards instead of posting new ones.

When Prometheus cannot be reached, the channel is told once; the watcher backs off
exponentially and says when Prometheus is back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block

from bot.blocks.alarms import (
    AlarmView,
    alarm_card,
    alarm_text,
    alarm_thread_note,
    prometheus_back_text,
    prometheus_down_text,
)
from bot.plots import drift_score_plot
from bot.ports import DriftAlert, MetricsSource, UpstreamError
from bot.runbook import RunBook
from bot.runs import POST_EVENT, find_post
from bot.store import Store

log = logging.getLogger(__name__)

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

OPEN_STATES = ("firing", "snoozed", "ignored")


@dataclass(frozen=True)
class DriftWatchConfig:
    channel: str
    prometheus_url: str
    backoff_base_s: float = 5.0
    backoff_max_s: float = 300.0
    history_hours: float = 3.0
    snooze_s: float = 3600.0


class AlarmBook:
    """The `alarms` table: open, update, act on and resolve drift episodes."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        store.migrate("alarms", 1, _SCHEMA)

    def open_episodes(self) -> list[AlarmView]:
        with self.store.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM alarms WHERE state != 'resolved' ORDER BY opened_at"
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

    def _row(self, episode_id: str) -> sqlite3.Row | None:
        with self.store.connect() as conn:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM alarms WHERE episode_id=?", (episode_id,)
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
        with self.store.connect() as conn:
            conn.execute(
                "UPDATE alarms SET score=?, peak_score=MAX(peak_score, ?), features=?,"
                " updated_at=? WHERE episode_id=?",
                (score, score, json.dumps(dict(features)), self.clock(), episode_id),
            )

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

    def resolve(self, episode_id: str) -> bool:
        with self.store.tx() as conn:
            cur = conn.execute(
                "UPDATE alarms SET state='resolved', resolved_at=? "
                "WHERE episode_id=? AND state!='resolved'",
                (self.clock(), episode_id),
            )
            if cur.rowcount == 1:
                self.store.audit("ganops", "drift_alarm", episode_id, "resolved", None, conn)
        return cur.rowcount == 1

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

    def set_retrain(self, episode_id: str, user: str, run_id: str) -> None:
        with self.store.connect() as conn:
            conn.execute(
                "UPDATE alarms SET retrain_run_id=?, acted_by=? WHERE episode_id=?",
                (run_id, user, episode_id),
            )
        self.store.audit(user, "drift_retrain", episode_id, "launched", {"run_id": run_id})

    def _act(
        self, episode_id: str, user: str, outcome: str, sql: str, args: tuple[object, ...]
    ) -> bool:
        with self.store.tx() as conn:
            cur = conn.execute(sql, args)
            ok = cur.rowcount == 1
            self.store.audit(
                user, "drift_alarm", episode_id, outcome if ok else f"{outcome}:no-op", None, conn
            )
        return ok


def _view(row: sqlite3.Row) -> AlarmView:
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
    )


class DriftWatcher:
    """One `tick()` per interval (an APScheduler job). Safe to call from one thread at a time;
    a lock makes overlapping ticks skip instead of double-posting."""

    def __init__(
        self,
        book: AlarmBook,
        metrics: MetricsSource,
        client: WebClient,
        config: DriftWatchConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.book = book
        self.metrics = metrics
        self.client = client
        self.config = config
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._next_try = 0.0
        self._down_since: float | None = None

    def tick(self) -> None:
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._tick()
        finally:
            self._lock.release()

    def _tick(self) -> None:
        now = self.clock()
        if now < self._next_try:
            return
        try:
            alerts = self.metrics.firing_drift_alerts()
        except UpstreamError as exc:
            self._on_down(now, str(exc))
            return
        self._on_up(now)
        firing = {(a.model, a.version): a for a in alerts}
        for episode_id in self.book.unsnooze_due():
            view = self.book.get(episode_id)
            # A snooze that outlived the drift ends in "resolved" below, not in a wake-up call.
            if view is not None and (view.model, view.version) in firing:
                self._thread_note(episode_id, alarm_thread_note("refire", None))
        for view in self.book.open_episodes():
            alert = firing.pop((view.model, view.version), None)
            if alert is None:
                if self.book.resolve(view.episode_id):
                    self.render(view.episode_id)
                continue
            self.book.update_score(view.episode_id, alert.score, alert.features)
            self.render(view.episode_id)
        for alert in firing.values():
            opened = self.book.open(alert, self.config.channel)
            self.render(opened.episode_id)

    def render(self, episode_id: str) -> None:
        render_card(self.book, self.client, episode_id, self.config.channel, self._upload_plot)

    def _upload_plot(self, view: AlarmView, channel: str, thread_ts: str) -> None:
        try:
            history = self.metrics.score_history(
                view.model, view.version, self.config.history_hours
            )
        except UpstreamError as exc:
            log.warning("no drift history for the plot: %s", exc)
            history = []
        png = drift_score_plot(history, title=f"{view.model} v{view.version} drift score")
        try:
            self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread_ts,
                content=png,
                filename=f"{view.episode_id}.png",
                title=f"Drift score, {view.model} v{view.version}, last {self.config.history_hours:g} h",
            )
        except SlackApiError as exc:
            # The card is already up; a missing plot is worth a log line, not a lost alarm.
            log.warning("could not upload the drift plot: %s", exc)

    def _thread_note(self, episode_id: str, text: str) -> None:
        channel, ts, _ = self.book.row_meta(episode_id)
        if channel and ts:
            self.client.chat_postMessage(channel=channel, thread_ts=ts, text=text)

    def _on_down(self, now: float, error: str) -> None:
        self._failures += 1
        delay = min(
            self.config.backoff_base_s * 2 ** (self._failures - 1), self.config.backoff_max_s
        )
        self._next_try = now + delay
        log.warning("Prometheus unreachable (%s); next try in %.0f s", error, delay)
        if self._down_since is None:
            self._down_since = now
            self.client.chat_postMessage(
                channel=self.config.channel,
                text=prometheus_down_text(self.config.prometheus_url, error, delay),
            )

    def _on_up(self, now: float) -> None:
        if self._down_since is not None:
            self.client.chat_postMessage(
                channel=self.config.channel,
                text=prometheus_back_text(self.config.prometheus_url, now - self._down_since),
            )
        self._failures = 0
        self._next_try = 0.0
        self._down_since = None


def render_card(
    book: AlarmBook,
    client: WebClient,
    episode_id: str,
    default_channel: str,
    on_first_post: Callable[[AlarmView, str, str], None] | None = None,
) -> None:
    """Post an episode's card if it has no message yet, else update it in place if it changed.

    Shared by the watcher and the alarm buttons, so both render the one card the same way.
    """
    view = book.get(episode_id)
    if view is None:
        return
    channel, ts, last = book.row_meta(episode_id)
    channel = channel or default_channel
    blocks = alarm_card(view)
    rendered = json.dumps([b.to_dict() for b in blocks], sort_keys=True)
    if ts is not None and rendered == last:
        return
    posted = False
    if ts is None:
        channel, ts, posted = _post_card_once(book, client, view, channel, blocks)
        book.set_message(episode_id, channel, ts)
        if posted and on_first_post is not None:
            on_first_post(view, channel, ts)
    if not posted:  # an earlier card (this one, or one found after a crash) is brought up to date
        client.chat_update(channel=channel, ts=ts, text=alarm_text(view), blocks=blocks)
    book.set_rendered(episode_id, rendered)


def _post_card_once(
    book: AlarmBook, client: WebClient, view: AlarmView, channel: str, blocks: list[Block]
) -> tuple[str, str, bool]:
    """Post the episode's card at most once, even if the bot died between posting it and
    recording its ts: the claim in `posts` makes a restarted bot look for the card (by its
    metadata) before posting again. Returns (channel, ts, whether this call posted it)."""
    key = f"{view.episode_id}:card"
    posted: list[str] = []

    def post() -> str:
        resp = client.chat_postMessage(
            channel=channel,
            text=alarm_text(view),
            blocks=blocks,
            metadata={"event_type": POST_EVENT, "event_payload": {"key": key}},
        )
        posted.append(str(resp.get("channel") or channel))  # an id, even if given a #name
        return str(resp["ts"])

    def find(since: float) -> str | None:
        return find_post(client, channel, None, key, since)

    ts = RunBook(book.store).post_once(key, channel, None, post, find)
    return (posted[0] if posted else channel), ts, bool(posted)
