"""The end of a drift episode: resolved by the deploy that fixed it once the new version's score
stayed under 1, or a turned-down retrain noted with the buttons back. Local Slack Web API, real
sqlite store, an in-memory metrics source and an injected clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_sdk import WebClient

from ganops.bot.drift.lifecycle import Deployed, EpisodeCloser
from ganops.bot.drift.watch import AlarmBook, DriftWatchConfig, DriftWatcher
from ganops.bot.local.slack import LocalSlack
from ganops.bot.runs.record import RunBook, RunRow
from ganops.bot.store import Store
from tests.bot.drift.stack import action_ids, card_text
from tests.bot.drift.test_watch import CHANNEL, PROM_URL, TOKEN, Clock, Metrics, alert

WINDOW = 120.0


class Scores(Metrics):
    """Score history per version (the base class has one series for all)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_version: dict[str, list[tuple[float, float]]] = {}

    def score_history(
        self, model: str, version: str, hours: float = 3.0
    ) -> list[tuple[float, float]]:
        return list(self.by_version.get(version, []))


class Stack:
    def __init__(self, state: Path, slack: LocalSlack) -> None:
        self.clock = Clock()
        self.metrics = Scores()
        self.slack = slack
        self.book = AlarmBook(Store(state), self.clock)
        self.deployed: Deployed | None = None
        closer = EpisodeCloser(
            self.book,
            self.metrics,
            lambda model: self.deployed,
            resolve_after_s=WINDOW,
            clock=self.clock,
        )
        client = WebClient(token=TOKEN, base_url=slack.url)
        config = DriftWatchConfig(channel=CHANNEL, prometheus_url=PROM_URL)
        self.watcher = DriftWatcher(
            self.book, self.metrics, client, config, clock=self.clock, closer=closer
        )

    def card(self) -> dict:  # type: ignore[type-arg]
        [card] = [m for m in self.slack.messages(CHANNEL) if not m["thread_ts"] and m["blocks"]]
        return card

    def open_v3(self) -> str:
        self.metrics.firing = [alert(2.5, "3")]
        self.watcher.tick()
        [episode] = self.book.open_episodes()
        return episode.episode_id

    def scores(self, version: str, first: float, value: float) -> None:
        """Samples every 5 s from `first` seconds ago to now."""
        now = self.clock.now
        self.metrics.by_version[version] = [
            (now - first + 5 * i, value) for i in range(int(first // 5) + 1)
        ]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    server = LocalSlack(token=TOKEN).start()
    yield Stack(tmp_path / "state", server)
    server.stop()


def test_the_deploy_that_fixed_it_resolves_the_card_in_place(stack: Stack) -> None:
    episode = stack.open_v3()
    stack.book.set_retrain(episode, "U_ALICE", "run-7")
    stack.book.set_captured(episode, 240)
    first_ts = stack.card()["ts"]
    stack.clock.now += 600
    stack.deployed = Deployed("4", stack.clock.now - WINDOW - 30)
    stack.metrics.firing = [alert(2.5, "3")]  # keep_firing_for: the old alert still fires

    stack.scores("4", WINDOW / 2, 0.41)  # scored for half the window only
    stack.watcher.tick()
    assert stack.book.get(episode).state == "firing"  # type: ignore[union-attr]
    assert "resolves once its score stays under 1 for 2 min (now 0.41)" in card_text(stack.card())

    stack.clock.now += WINDOW
    stack.scores("4", WINDOW + 30, 0.41)
    stack.watcher.tick()
    view = stack.book.get(episode)
    assert view is not None
    assert view.state == "resolved"
    card = stack.card()
    assert card["ts"] == first_ts  # updated in place
    text = card_text(card)
    assert "Resolved: v4 deployed at" in text
    assert "after retrain on 240 captured inputs; score 0.41" in text
    assert action_ids(card) == []
    [row] = [r for r in stack.book.store.list_audit(obj=episode) if r.outcome == "resolved"]
    assert row.detail["deployed_version"] == "4"
    assert "v4 deployed" in row.detail["note"]
    plots = [m for m in stack.slack.messages(CHANNEL) if m["thread_ts"] == first_ts and m["files"]]
    assert len(plots) == 2  # the alarm's plot, and the one through the fix
    assert plots[1]["files"][0]["title"] == "Drift score through the fix"


def test_a_new_version_still_over_1_keeps_the_episode_open(stack: Stack) -> None:
    episode = stack.open_v3()
    stack.clock.now += 600
    stack.deployed = Deployed("4", None)
    stack.metrics.firing = []
    stack.scores("4", WINDOW + 30, 1.7)
    stack.watcher.tick()
    assert stack.book.get(episode).state == "firing"  # type: ignore[union-attr]
    assert "(now 1.70)" in card_text(stack.card())


def test_a_retrain_the_gate_turned_down_says_so_and_brings_the_buttons_back(
    stack: Stack,
) -> None:
    episode = stack.open_v3()
    runs = RunBook(stack.book.store)
    runs.add(RunRow("run-9", episode, "cut", "U_ALICE", CHANNEL, state="running"))
    stack.book.set_retrain(episode, "U_ALICE", "run-9")
    stack.watcher.tick()
    assert action_ids(stack.card()) == []
    runs.update("run-9", state="gated")
    stack.watcher.tick()
    view = stack.book.get(episode)
    assert view is not None
    assert view.retrain_run_id is None
    assert view.attempts == 1
    text = card_text(stack.card())
    assert "the gate kept the champion" in text
    assert action_ids(stack.card()) == ["alarm_retrain", "alarm_snooze_for", "alarm_ignore"]
    stack.watcher.tick()  # noted once
    turned = [r for r in stack.book.store.list_audit(obj=episode) if r.outcome == "turned_down"]
    assert len(turned) == 1
