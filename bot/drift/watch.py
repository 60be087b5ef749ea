"""The drift watcher: polls Prometheus, and keeps one alarm card per model version and episode.

An episode opens when GanInputDrift starts firing for (model, version) and closes when it
stops. A version whose score series is gone (GanDriftScoreAbsent, or GanInputDrift kept firing
over a missing series) is "no data" on its card, never "resolved": the episode stays open and
goes on when the data comes back. Its card is posted once, updated in place while it fires, and marked resolved when it
ends. Every fact lives in the `alarms` table (`bot.drift.alarms`), so a restarted bot finds the
open episodes and keeps updating the same cards instead of posting new ones.

When Prometheus cannot be reached, the channel is told once; the watcher backs off
exponentially and says when Prometheus is back.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block

from ganops.bot.blocks.alarms import (
    AlarmView,
    alarm_card,
    alarm_text,
    alarm_thread_note,
    prometheus_back_text,
    prometheus_down_text,
)
from ganops.bot.drift.alarms import OPEN_STATES, AlarmBook
from ganops.bot.drift.lifecycle import Deployed, EpisodeCloser
from ganops.bot.drift.plots import BEFORE_S, score_figure, to_png
from ganops.bot.ports import DriftAlert, MetricsSource, UpstreamError
from ganops.bot.runs.record import RunBook
from ganops.bot.runs.start import POST_EVENT, find_post

__all__ = ["OPEN_STATES", "AlarmBook", "DriftWatchConfig", "DriftWatcher", "render_card"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftWatchConfig:
    channel: str
    prometheus_url: str
    backoff_base_s: float = 5.0
    backoff_max_s: float = 300.0
    history_hours: float = 3.0
    snooze_s: float = 3600.0


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
        closer: EpisodeCloser | None = None,
    ) -> None:
        self.closer = closer  # resolves episodes by the deploy that fixed them
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
                note = alarm_thread_note("refire", None)
                self._isolated(episode_id, partial(self._thread_note, episode_id, note))
        for view in self.book.open_episodes():
            alert = firing.pop((view.model, view.version), None)
            self._isolated(view.episode_id, partial(self._follow, view, alert, now))
        for alert in firing.values():
            if not (alert.firing and alert.has_data):
                continue  # a silence with no episode open: nothing to alarm about
            self._isolated(f"{alert.model} v{alert.version}", partial(self._open, alert))

    def _isolated(self, what: str, step: Callable[[], None]) -> None:
        """One alarm's work. A failure (a card Slack won't update, a bad row) is logged with
        its traceback and tried again next tick; it never stops the other alarms."""
        try:
            step()
        except Exception:
            log.exception("drift alarm %s failed; retrying next tick", what)

    def _follow(self, view: AlarmView, alert: DriftAlert | None, now: float) -> None:
        deployed = self.closer.check(view) if self.closer is not None else None
        if self.closer is not None and deployed is not None:
            # Replaced: the old version's alert says nothing now; the new one's score does.
            if self.closer.settle(view, deployed):
                self._upload_resolution_plot(view, deployed)
            self.render(view.episode_id)
            return
        if alert is None:
            if self.book.resolve(view.episode_id):
                self.render(view.episode_id)
            return
        if alert.has_data:
            # Data again after a silence: the same episode and card go on.
            features = alert.features or view.features
            self.book.update_score(view.episode_id, alert.score, features)
        else:
            # The series is gone (server down, scrape failing): "no data", not "back
            # under 1". The card keeps its last values; the episode stays open.
            self.book.mark_no_data(view.episode_id, alert.active_since or now)
        self.render(view.episode_id)

    def _open(self, alert: DriftAlert) -> None:
        opened = self.book.open(alert, self.config.channel)
        self.render(opened.episode_id)

    def render(self, episode_id: str) -> None:
        render_card(self.book, self.client, episode_id, self.config.channel, self._upload_plot)

    def _history(self, model: str, version: str, start: float) -> list[tuple[float, float]]:
        hours = max(self.config.history_hours, (self.clock() - start) / 3600.0)
        try:
            history = self.metrics.score_history(model, version, hours)
        except UpstreamError as exc:
            log.warning("no drift history for the plot: %s", exc)
            return []
        return [(t, v) for t, v in history if t >= start]

    def _upload_plot(self, view: AlarmView, channel: str, thread_ts: str) -> None:
        # From well before the episode (or since the version went live: the series starts
        # there) to now, so the plot shows the score before and after it moved.
        start = view.opened_at - BEFORE_S
        figure = score_figure(
            self._history(view.model, view.version, start),
            title=f"{view.model} v{view.version} drift score",
            start=start,
            end=self.clock(),
            marks=[(view.opened_at, "alarm")],
        )
        png = to_png(figure)
        self._upload(view, channel, thread_ts, png, f"Drift score, {view.model} v{view.version}")

    def _upload_resolution_plot(self, view: AlarmView, deployed: Deployed) -> None:
        channel, ts, _ = self.book.row_meta(view.episode_id)
        if not (channel and ts):
            return
        start = view.opened_at - BEFORE_S
        old = self._history(view.model, view.version, start)
        new = self._history(view.model, deployed.version, start)
        marks = [(view.opened_at, "alarm")]
        if deployed.at is not None:
            marks.append((deployed.at, f"v{deployed.version} deployed"))
        figure = score_figure(
            sorted(old + new),
            title=f"{view.model} drift score: v{view.version} then v{deployed.version}",
            start=start,
            end=self.clock(),
            marks=marks,
        )
        png = to_png(figure)
        self._upload(view, channel, ts, png, "Drift score through the fix", suffix="-resolved")

    def _upload(
        self,
        view: AlarmView,
        channel: str,
        thread_ts: str,
        png: bytes,
        title: str,
        suffix: str = "",
    ) -> None:
        try:
            self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread_ts,
                content=png,
                filename=f"{view.episode_id}{suffix}.png",
                title=title,
            )
        except SlackApiError as exc:
            # The card is already up; a missing plot is worth a log line, not a lost alarm.
            log.warning("could not upload the drift plot: %s", exc)

    def _thread_note(self, episode_id: str, text: str) -> None:
        channel, ts, _ = self.book.row_meta(episode_id)
        if channel and ts:
            self.client.chat_postMessage(channel=channel, thread_ts=ts, text=text)

    def _say(self, text: str) -> None:
        """A notice about Prometheus; Slack refusing it must not keep alarms from being
        handled, so it is logged and dropped."""
        try:
            self.client.chat_postMessage(channel=self.config.channel, text=text)
        except SlackApiError as exc:
            log.warning("could not post to %s: %s", self.config.channel, exc)

    def _on_down(self, now: float, error: str) -> None:
        self._failures += 1
        delay = min(
            self.config.backoff_base_s * 2 ** (self._failures - 1), self.config.backoff_max_s
        )
        self._next_try = now + delay
        log.warning("Prometheus unreachable (%s); next try in %.0f s", error, delay)
        if self._down_since is None:
            self._down_since = now
            self._say(prometheus_down_text(self.config.prometheus_url, error, delay))

    def _on_up(self, now: float) -> None:
        if self._down_since is not None:
            self._say(prometheus_back_text(self.config.prometheus_url, now - self._down_since))
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
