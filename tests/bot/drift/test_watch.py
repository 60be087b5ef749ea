"""The drift watcher's loop against the local Slack Web API, with the real `WebClient`.

The metrics source is an in-memory `MetricsSource` whose firing alerts the test sets (and
which can be made unreachable); the clock is injected, so backoff and snooze expiry are
checked without sleeping. Everything else is real: the sqlite `alarms` table, the Block Kit
cards, matplotlib's plot and the three-step `files_upload_v2`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from slack_sdk import WebClient

from ganops.bot.drift.retrain import retrain_params
from ganops.bot.drift.watch import AlarmBook, DriftWatchConfig, DriftWatcher, render_card
from ganops.bot.local.slack import LocalSlack
from ganops.bot.ports import DriftAlert, UpstreamError, VersionStats
from ganops.bot.runs.start import start_run
from ganops.bot.store import Store
from tests.bot.drift.stack import action_ids, card_text
from tests.fakes.approvals import MemoryRegistry
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import ALICE, BOB, Bot, eventually, make_services, start_bot
from tests.fakes.slack import CHANNEL as BOT_CHANNEL

TOKEN = "xoxb-drift-test"
CHANNEL = "C_DRIFT"
PROM_URL = "http://prometheus.test:9090"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Metrics:
    """An honest in-memory `MetricsSource`: what it returns is what the test set."""

    def __init__(self) -> None:
        self.firing: list[DriftAlert] = []
        self.down: str | None = None  # set: every query raises UpstreamError with this
        self.history: list[tuple[float, float]] = [(1_700_000_000.0 + i, 0.5) for i in range(5)]
        self.queried_at: list[float] = []
        self.clock: Clock | None = None
        self.versions: dict[str, VersionStats] = {}  # the canary analysis' measurements

    def firing_drift_alerts(self) -> list[DriftAlert]:
        if self.clock is not None:
            self.queried_at.append(self.clock.now)
        if self.down is not None:
            raise UpstreamError(self.down)
        return list(self.firing)

    def score_history(
        self, model: str, version: str, hours: float = 3.0
    ) -> list[tuple[float, float]]:
        if self.down is not None:
            raise UpstreamError(self.down)
        return list(self.history)

    def compare_versions(
        self, *, model: str, versions: Sequence[str], window_s: float
    ) -> dict[str, VersionStats]:
        if self.down is not None:
            raise UpstreamError(self.down)
        return {v: self.versions.get(v, VersionStats(v, 0.0)) for v in versions}


def alert(score: float = 2.5, version: str = "3", **features: float) -> DriftAlert:
    return DriftAlert(
        model="cut", version=version, score=score, features=features or {"brightness": 3.0}
    )


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    server = LocalSlack(token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics(clock: Clock) -> Metrics:
    m = Metrics()
    m.clock = clock
    return m


def make_watcher(
    state_dir: Path, slack: LocalSlack, metrics: Metrics, clock: Clock, **config: Any
) -> DriftWatcher:
    """A watcher as `build_jobs` makes one: a fresh Store and AlarmBook on `state_dir`."""
    book = AlarmBook(Store(state_dir), clock)
    client = WebClient(token=TOKEN, base_url=slack.url)
    cfg = DriftWatchConfig(channel=CHANNEL, prometheus_url=PROM_URL, **config)
    return DriftWatcher(book, metrics, client, cfg, clock=clock)


@pytest.fixture
def watcher(tmp_path: Path, slack: LocalSlack, metrics: Metrics, clock: Clock) -> DriftWatcher:
    return make_watcher(tmp_path / "state", slack, metrics, clock)


def cards(slack: LocalSlack) -> list[dict[str, Any]]:
    """Top-level channel messages that are alarm cards (they have blocks)."""
    return [m for m in slack.messages(CHANNEL) if not m["thread_ts"] and m["blocks"]]


def plain_posts(slack: LocalSlack) -> list[dict[str, Any]]:
    return [m for m in slack.messages(CHANNEL) if not m["thread_ts"] and not m["blocks"]]


def in_thread(slack: LocalSlack, ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages(CHANNEL) if m["thread_ts"] == ts]


def test_a_firing_alert_posts_one_card_and_its_plot(
    watcher: DriftWatcher, metrics: Metrics, slack: LocalSlack
) -> None:
    metrics.firing = [alert(2.5, brightness=3.2, contrast=1.4)]
    watcher.tick()

    [card] = cards(slack)
    text = card_text(card)
    assert "cut v3" in text
    assert "2.50" in text
    assert "`brightness` 3.20" in text
    assert "`contrast` 1.40" in text
    assert action_ids(card) == ["alarm_retrain", "alarm_snooze_for", "alarm_ignore"]
    [episode] = watcher.book.open_episodes()
    buttons = [e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]]
    values = {b["value"] for b in buttons if "value" in b}
    values |= {o["value"].partition(":")[2] for b in buttons for o in b.get("options", [])}
    assert values == {episode.episode_id}  # only the id (and a snooze length), nothing else
    assert watcher.book.row_meta(episode.episode_id)[:2] == (CHANNEL, card["ts"])

    # files_upload_v2: get an upload URL, send the bytes there, complete into the card's thread
    assert len(slack.calls("files.getUploadURLExternal")) == 1
    [complete] = slack.calls("files.completeUploadExternal")
    assert complete.args["thread_ts"] == card["ts"]
    [plot_post] = in_thread(slack, card["ts"])
    [file] = plot_post["files"]
    assert slack.file_bytes(file["id"]).startswith(PNG_MAGIC)
    assert "cut v3" in file["title"]


def test_ticks_update_the_same_card_only_when_it_changed(
    watcher: DriftWatcher, metrics: Metrics, slack: LocalSlack
) -> None:
    metrics.firing = [alert(2.5)]
    watcher.tick()
    [card] = cards(slack)

    watcher.tick()  # nothing changed: no Web API call at all
    watcher.tick()
    assert slack.calls("chat.update") == []
    assert len(slack.calls("chat.postMessage")) == 1

    metrics.firing = [alert(4.25, brightness=5.0)]
    watcher.tick()
    metrics.firing = [alert(3.0, brightness=3.5)]
    watcher.tick()
    updates = slack.calls("chat.update")
    assert [(u.args["channel"], u.args["ts"]) for u in updates] == [(CHANNEL, card["ts"])] * 2
    [card] = cards(slack)  # still one card, now showing the latest score and the peak
    assert "3.00 (peak 4.25)" in card_text(card)
    assert "`brightness` 3.50" in card_text(card)
    assert len(slack.calls("files.getUploadURLExternal")) == 1  # the plot goes up once


def test_the_card_is_marked_resolved_and_a_new_episode_gets_a_new_card(
    watcher: DriftWatcher, metrics: Metrics, slack: LocalSlack, clock: Clock
) -> None:
    metrics.firing = [alert(2.5)]
    watcher.tick()
    [first] = watcher.book.open_episodes()

    metrics.firing = []
    clock.now += 60
    watcher.tick()
    [card] = cards(slack)
    assert "Input drift resolved" in card_text(card)
    assert "Resolved" in card["text"]
    assert action_ids(card) == []  # no buttons on an ended episode
    assert watcher.book.get(first.episode_id).state == "resolved"  # type: ignore[union-attr]
    watcher.tick()  # resolved stays resolved, untouched
    assert len(slack.calls("chat.update")) == 1

    metrics.firing = [alert(1.7)]
    clock.now += 60
    watcher.tick()
    old, new = cards(slack)
    assert old["ts"] == card["ts"]
    assert "Input drift resolved" in card_text(old)
    assert "Input drift: cut v3" in card_text(new)
    [second] = watcher.book.open_episodes()
    assert second.episode_id != first.episode_id


def test_each_model_version_gets_its_own_card(
    watcher: DriftWatcher, metrics: Metrics, slack: LocalSlack
) -> None:
    metrics.firing = [alert(2.0, version="3")]
    watcher.tick()
    metrics.firing = [alert(2.0, version="3"), alert(5.0, version="4")]
    watcher.tick()
    v3, v4 = cards(slack)
    assert "cut v3" in card_text(v3)
    assert "cut v4" in card_text(v4)
    assert slack.calls("chat.update") == []

    metrics.firing = [alert(2.0, version="3")]  # v4 ends, v3 keeps firing
    watcher.tick()
    [update] = slack.calls("chat.update")
    assert update.args["ts"] == v4["ts"]
    v3, v4 = cards(slack)
    assert "resolved" not in card_text(v3)
    assert "Input drift resolved" in card_text(v4)


def test_a_restarted_watcher_keeps_updating_the_same_card(
    tmp_path: Path, slack: LocalSlack, metrics: Metrics, clock: Clock
) -> None:
    metrics.firing = [alert(2.5)]
    make_watcher(tmp_path / "state", slack, metrics, clock).tick()
    [card] = cards(slack)

    restarted = make_watcher(tmp_path / "state", slack, metrics, clock)
    restarted.tick()  # the same facts: the restart is invisible in the channel
    assert len(slack.calls("chat.postMessage")) == 1
    assert slack.calls("chat.update") == []

    metrics.firing = [alert(6.0)]
    restarted.tick()
    [update] = slack.calls("chat.update")
    assert update.args["ts"] == card["ts"]
    metrics.firing = []
    make_watcher(tmp_path / "state", slack, metrics, clock).tick()
    [card] = cards(slack)
    assert "Input drift resolved" in card_text(card)
    assert len(slack.calls("files.getUploadURLExternal")) == 1


def test_a_crash_between_posting_and_recording_the_card_posts_no_duplicate(
    tmp_path: Path, slack: LocalSlack, metrics: Metrics, clock: Clock
) -> None:
    metrics.firing = [alert(2.5)]
    crashing = make_watcher(tmp_path / "state", slack, metrics, clock)

    def die(*args: object) -> None:
        raise KeyboardInterrupt("the bot was killed here")

    crashing.book.set_message = die  # type: ignore[method-assign,assignment]
    with pytest.raises(KeyboardInterrupt):
        crashing.tick()
    [card] = cards(slack)  # it reached Slack, but the alarms row never learnt its ts

    metrics.firing = [alert(3.5)]
    make_watcher(tmp_path / "state", slack, metrics, clock).tick()
    [after] = cards(slack)
    assert after["ts"] == card["ts"]
    assert "3.50" in card_text(after)


def test_unreachable_prometheus_is_told_once_with_growing_backoff_then_back_once(
    tmp_path: Path, slack: LocalSlack, metrics: Metrics, clock: Clock
) -> None:
    watcher = make_watcher(
        tmp_path / "state", slack, metrics, clock, backoff_base_s=5.0, backoff_max_s=60.0
    )
    metrics.firing = [alert(2.5)]
    watcher.tick()
    assert len(cards(slack)) == 1

    metrics.down = "connection refused"
    for _ in range(300):  # five minutes of ticks, one a second
        clock.now += 1
        watcher.tick()
    [down] = plain_posts(slack)
    assert "unreachable" in down["text"]
    assert PROM_URL in down["text"]
    assert "connection refused" in down["text"]
    gaps = [b - a for a, b in zip(metrics.queried_at[1:], metrics.queried_at[2:], strict=False)]
    assert gaps[:4] == [5.0, 10.0, 20.0, 40.0]  # doubling...
    assert set(gaps[4:]) == {60.0}  # ...up to the cap
    assert len(metrics.queried_at) < 15
    # an outage is not the end of the drift: the open card is left alone
    assert slack.calls("chat.update") == []
    assert [e.state for e in watcher.book.open_episodes()] == ["firing"]

    metrics.down = None
    for _ in range(30):  # the next try is due within 60 s of the last failure
        clock.now += 1
        watcher.tick()
    posts = plain_posts(slack)
    assert len(posts) == 2
    assert "reachable again" in posts[1]["text"]
    assert len(cards(slack)) == 1
    assert metrics.queried_at[-1] - metrics.queried_at[-2] == 1.0  # polling at full rate again

    metrics.down = "timed out"  # a second outage is news again, once
    for _ in range(30):
        clock.now += 1
        watcher.tick()
    assert len(plain_posts(slack)) == 3


def test_a_missing_plot_does_not_lose_the_alarm(
    watcher: DriftWatcher, metrics: Metrics, slack: LocalSlack
) -> None:
    metrics.firing = [alert(2.5)]
    slack.fail_next("files.getUploadURLExternal", "not_allowed_token_type")
    watcher.tick()
    [card] = cards(slack)
    assert in_thread(slack, card["ts"]) == []
    [episode] = watcher.book.open_episodes()
    assert watcher.book.row_meta(episode.episode_id)[1] == card["ts"]


def test_snooze_expiry_is_noted_in_the_thread_while_it_still_fires(
    watcher: DriftWatcher, metrics: Metrics, slack: LocalSlack, clock: Clock
) -> None:
    metrics.firing = [alert(2.5)]
    watcher.tick()
    [episode] = watcher.book.open_episodes()
    assert watcher.book.snooze(episode.episode_id, "U_CAROL", 3600)
    clock.now += 60
    watcher.tick()
    [card] = cards(slack)
    assert "Snoozed by <@U_CAROL>" in card_text(card)
    assert action_ids(card) == ["alarm_retrain", "alarm_ignore"]

    clock.now += 3600
    watcher.tick()
    notes = [m for m in in_thread(slack, card["ts"]) if not m["files"]]
    assert [n["text"] for n in notes] == ["The snooze ended and the drift is still there."]
    [card] = cards(slack)
    assert action_ids(card) == ["alarm_retrain", "alarm_snooze_for", "alarm_ignore"]
    watcher.tick()
    assert len([m for m in in_thread(slack, card["ts"]) if not m["files"]]) == 1


def test_a_snooze_that_ends_after_the_drift_says_resolved_not_still_there(
    watcher: DriftWatcher, metrics: Metrics, slack: LocalSlack, clock: Clock
) -> None:
    metrics.firing = [alert(2.5)]
    watcher.tick()
    [episode] = watcher.book.open_episodes()
    watcher.book.snooze(episode.episode_id, "U_CAROL", 3600)
    metrics.firing = []
    clock.now += 3601
    watcher.tick()
    [card] = cards(slack)
    assert "Input drift resolved" in card_text(card)
    notes = [m for m in in_thread(slack, card["ts"]) if not m["files"]]
    assert all("still there" not in n["text"] for n in notes)


# --- the alarm's buttons, through the real Bolt app over signed HTTP (no Prometheus) --------


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[Bot]:
    launcher = ScriptedLauncher(url_base="http://kfp.test")
    registry = MemoryRegistry()
    registry.add("cut", "3")
    bot = start_bot(
        tmp_path,
        launcher,
        lambda s: make_services(s, launcher, registry=registry),
        GANOPS_APPROVERS=f"{ALICE},{BOB}",  # the alarm's buttons are for approvers
    )
    yield bot
    bot.stop()


def post_card(bot: Bot) -> tuple[AlarmBook, str, str]:
    """Open an episode for cut v3 and post its card as the watcher would: (book, id, ts)."""
    book = AlarmBook(bot.services.store)
    episode = book.open(alert(2.5), BOT_CHANNEL).episode_id
    render_card(book, bot.services.slack, episode, BOT_CHANNEL)
    ts = book.row_meta(episode)[1]
    assert ts is not None
    return book, episode, ts


def settle(bot: Bot) -> None:
    eventually(lambda: bot.executor.busy == 0)


def test_a_retrain_click_after_a_crash_records_the_run_on_the_alarm(bot: Bot) -> None:
    book, episode, ts = post_card(bot)
    # The first click's listener started the run, then the bot died before noting it.
    params = retrain_params(bot.services, "cut", "3")
    first = start_run(bot.services, params, episode, requested_by=ALICE, channel=BOT_CHANNEL)
    bot.click("alarm_retrain", episode, ALICE, ts)
    settle(bot)
    launcher = cast(ScriptedLauncher, bot.services.launcher)
    assert launcher.launches == 1
    assert book.get(episode).retrain_run_id == first.run_id  # type: ignore[union-attr]
    [card] = [m for m in bot.slack.messages(BOT_CHANNEL) if m["ts"] == ts]
    assert f"run `{first.run_id}`" in card_text(card)
    assert action_ids(card) == []
    [note] = bot.slack.ephemerals(ALICE)
    assert "already running" in note["text"]


def test_a_retrain_click_while_the_backend_is_down_says_so_and_changes_nothing(
    bot: Bot,
) -> None:
    book, episode, ts = post_card(bot)
    launcher = cast(ScriptedLauncher, bot.services.launcher)
    launcher.down = True
    bot.click("alarm_retrain", episode, ALICE, ts)
    [note] = bot.slack.wait_for(lambda s: s.ephemerals(ALICE))
    assert "Could not start the retrain" in note["text"]
    settle(bot)
    assert book.get(episode).retrain_run_id is None  # type: ignore[union-attr]
    assert slack_updates(bot) == 0
    launcher.down = False  # the button still works afterwards
    bot.click("alarm_retrain", episode, ALICE, ts)
    settle(bot)
    assert launcher.launches == 1
    assert book.get(episode).retrain_run_id == "run-1"  # type: ignore[union-attr]


def test_a_retrain_click_respects_one_run_per_model(bot: Bot) -> None:
    _, episode, ts = post_card(bot)
    bot.slash("/retrain", "epochs=2", user=BOB)
    bot.slack.wait_for(lambda s: len(s.messages(BOT_CHANNEL)) == 2)
    bot.click("alarm_retrain", episode, ALICE, ts)
    [note] = bot.slack.wait_for(lambda s: s.ephemerals(ALICE))
    assert "already going: `run-1`" in note["text"]
    settle(bot)
    assert cast(ScriptedLauncher, bot.services.launcher).launches == 1


def test_a_click_on_an_unknown_alarm_is_answered(bot: Bot) -> None:
    _, _, ts = post_card(bot)
    bot.click("alarm_snooze", "drift-cut-v3-forged", ALICE, ts)
    bot.click("alarm_retrain", "drift-cut-v3-forged", BOB, ts)
    [snooze] = bot.slack.wait_for(lambda s: s.ephemerals(ALICE))
    [retrain] = bot.slack.wait_for(lambda s: s.ephemerals(BOB))
    assert "already ended or been handled" in snooze["text"]
    assert "no longer known" in retrain["text"]
    settle(bot)
    assert cast(ScriptedLauncher, bot.services.launcher).launches == 0


def slack_updates(bot: Bot) -> int:
    return len(bot.slack.calls("chat.update"))


def silent(version: str = "3", since: float | None = None) -> DriftAlert:
    """What the adapter reports when the version's score series is gone."""
    return DriftAlert(model="cut", version=version, score=0.0, active_since=since, has_data=False)


def test_a_vanished_series_is_no_data_and_its_return_continues_the_episode(
    watcher: DriftWatcher, metrics: Metrics, slack: LocalSlack, clock: Clock
) -> None:
    metrics.firing = [alert(4.2, brightness=3.5)]
    watcher.tick()
    [card] = cards(slack)
    [episode] = watcher.book.open_episodes()
    # The server goes down: its series vanish (GanDriftScoreAbsent, or GanInputDrift kept
    # firing over a missing series). Not "back under 1": no data, since the silence began.
    went_silent = clock.now + 60
    clock.now += 90
    metrics.firing = [silent(since=went_silent)]
    watcher.tick()
    [card] = cards(slack)
    text = card_text(card)
    since = time.strftime("%H:%M", time.localtime(went_silent))
    assert f"no data since {since}" in text
    assert "(last 4.20, peak 4.20)" in text  # the last values stay, marked as such
    assert "resolved" not in text.lower()
    assert "back under 1" not in text
    assert action_ids(card) == ["alarm_retrain", "alarm_snooze_for", "alarm_ignore"]
    [still] = watcher.book.open_episodes()
    assert (still.episode_id, still.state, still.no_data_since) == (
        episode.episode_id,
        "firing",
        went_silent,
    )
    watcher.tick()  # still silent: the since-time does not move
    assert watcher.book.open_episodes()[0].no_data_since == went_silent
    # The data comes back: drift is pending again, the silence is still held (keep_firing_for)
    # and reports the fresh score; then drift fires. The same episode and card go on.
    clock.now += 600
    metrics.firing = [replace(alert(1.3, brightness=1.5), firing=False)]
    watcher.tick()
    [card] = cards(slack)
    assert "1.30 (peak 4.20)" in card_text(card)
    assert watcher.book.open_episodes()[0].episode_id == episode.episode_id
    metrics.firing = [alert(2.1, brightness=2.0)]
    watcher.tick()
    [card] = cards(slack)
    assert "no data" not in card_text(card)
    assert "2.10 (peak 4.20)" in card_text(card)
    [back] = watcher.book.open_episodes()
    assert (back.episode_id, back.no_data_since) == (episode.episode_id, None)
    assert len(slack.calls("chat.postMessage")) == 1  # never a second card
    outcomes = [r.outcome for r in watcher.book.store.list_audit(obj=episode.episode_id)]
    assert outcomes == ["data_back", "no_data", "opened"]


def test_a_silence_held_after_the_data_came_back_under_1_opens_nothing(
    watcher: DriftWatcher, metrics: Metrics, slack: LocalSlack
) -> None:
    metrics.firing = [replace(alert(0.4), firing=False)]
    watcher.tick()
    assert cards(slack) == []


def test_silence_alone_opens_no_episode_and_silence_that_ends_the_alert_says_so(
    watcher: DriftWatcher, metrics: Metrics, slack: LocalSlack, clock: Clock
) -> None:
    metrics.firing = [silent(version="9")]
    watcher.tick()
    assert cards(slack) == []
    assert watcher.book.open_episodes() == []
    metrics.firing = [alert(3.0)]
    watcher.tick()
    metrics.firing = [silent()]
    watcher.tick()
    metrics.firing = []  # both alerts gone (the silent version left the 1 h look-back)
    clock.now += 3600
    watcher.tick()
    [card] = cards(slack)
    text = card_text(card)
    assert "closed, no data" in text
    assert "the score never came back" in text
    assert "back under 1" not in text


def test_a_card_that_cannot_be_updated_does_not_stop_the_other_alarms(
    watcher: DriftWatcher, metrics: Metrics, slack: LocalSlack, caplog: pytest.LogCaptureFixture
) -> None:
    metrics.firing = [alert(2.0, version="3")]
    watcher.tick()
    [v3] = cards(slack)
    slack.delete_message(CHANNEL, v3["ts"])  # its updates now get message_not_found
    metrics.firing = [alert(4.0, version="3"), alert(5.0, version="4"), alert(6.0, version="5")]
    watcher.tick()
    shown = " ".join(card_text(c) for c in cards(slack))
    assert "cut v4" in shown
    assert "cut v5" in shown
    assert "drift alarm" in caplog.text  # the failure is logged, with its traceback
    assert "message_not_found" in caplog.text
