"""The drift loop end to end: a real `ganops serve` scraped every second by a real Prometheus,
the bot's real background jobs (`build_jobs`, so the real drift-watch job) querying it, the
real Bolt app over HTTP with signed interactivity payloads, and the Web API answered by the
local Slack. Only the pipeline launcher is scripted (a real kfp.local run would take minutes;
the alarm's Retrain must start one run, not finish it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from ganops.bot.adapters.prometheus import PrometheusMetrics
from ganops.bot.drift.watch import AlarmBook
from ganops.bot.ports import DriftAlert
from ganops.bot.scheduler import Jobs, build_jobs
from ganops.bot.services import Services
from ganops.bot.settings import Settings
from tests.bot.drift.stack import (
    FOR_S,
    MODEL,
    SCORE,
    VERSION,
    WINDOW,
    DriftStack,
    action_ids,
    calm,
    card_text,
    drift,
    shared_stack,
)
from tests.fakes.approvals import MemoryRegistry
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.serving import scenes
from tests.fakes.slack import ALICE, BOB, CAROL, CHANNEL, Bot, make_services, start_bot

pytestmark = pytest.mark.slow

DATA = "/srv/data/cut-v7"  # where version 7 was trained, per its registry tags


@pytest.fixture(scope="module")
def drift_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DriftStack]:
    yield from shared_stack(request, tmp_path_factory)


class CountingMetrics:
    """The real `PrometheusMetrics`, counting the watcher's polls so a test can wait for them."""

    def __init__(self, inner: PrometheusMetrics) -> None:
        self.inner = inner
        self.polls = 0

    def firing_drift_alerts(self) -> list[DriftAlert]:
        alerts = self.inner.firing_drift_alerts()
        self.polls += 1
        return alerts

    def score_history(
        self, model: str, version: str, hours: float = 3.0
    ) -> list[tuple[float, float]]:
        return self.inner.score_history(model, version, hours)

    def wait_polls(self, n: int, timeout: float = 30.0) -> None:
        """Wait until the watcher has polled `n` more times."""
        target = self.polls + n
        deadline = time.monotonic() + timeout
        while self.polls < target:
            assert time.monotonic() < deadline, "the drift-watch job is not polling"
            time.sleep(0.1)


@dataclass
class Loop:
    bot: Bot
    launcher: ScriptedLauncher
    metrics: CountingMetrics
    jobs: Jobs

    @property
    def slack(self) -> Any:
        return self.bot.slack

    def settle(self) -> None:
        deadline = time.monotonic() + 30
        while self.bot.executor.busy and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.bot.executor.busy == 0, "lazy listeners still running"


@pytest.fixture
def loop(tmp_path: Path, drift_stack: DriftStack) -> Iterator[Loop]:
    # The bot starts on a quiet stack: an alert left by another module's drift would still
    # fire for keep_firing_for, and the new bot would rightly post (and resolve) a card.
    calm(drift_stack, seed=1)
    launcher = ScriptedLauncher(url_base="http://kfp.test")
    registry = MemoryRegistry()
    registry.add(MODEL, VERSION)
    registry.set_tags(MODEL, VERSION, {"params": json.dumps({"data": DATA, "epochs": 3})})
    counting = CountingMetrics(PrometheusMetrics(drift_stack.prometheus.url))

    def services(settings: Settings) -> Services:
        built = make_services(settings, launcher, registry=registry)
        built.metrics = counting
        return built

    bot = start_bot(
        tmp_path,
        launcher,
        services,
        PROMETHEUS_URL=drift_stack.prometheus.url,
        GANOPS_DRIFT_INTERVAL="1",
        GANOPS_POLL_INTERVAL="1",
        GANOPS_APPROVERS=f"{ALICE},{BOB},{CAROL}",  # the alarm's buttons are for approvers
    )
    jobs = build_jobs(bot.settings, bot.services)
    assert "drift-watch" in jobs.names()
    jobs.start()
    try:
        yield Loop(bot, launcher, counting, jobs)
    finally:
        jobs.shutdown()
        bot.stop()


def cards(loop: Loop) -> list[dict[str, Any]]:
    return [m for m in loop.slack.messages(CHANNEL) if not m["thread_ts"] and m["blocks"]]


def wait_card(loop: Loop, check: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> Any:
    """Wait until there is exactly one alarm card and `check` holds for it; return it."""
    return loop.slack.wait_for(
        lambda s: (found := cards(loop)) and len(found) == 1 and check(found[0]) and found[0],
        timeout=timeout,
    )


def thread(loop: Loop, ts: str) -> list[dict[str, Any]]:
    return [m for m in loop.slack.messages(CHANNEL) if m["thread_ts"] == ts]


def open_episodes(loop: Loop) -> list[str]:
    return [v.episode_id for v in AlarmBook(loop.bot.services.store).open_episodes()]


def click_twice_and_retry(loop: Loop, action_id: str, value: str, ts: str) -> None:
    """A click, Slack's retry of that very request, and a second (double) click."""
    bodies: list[str] = []
    send = loop.bot.send

    def recording(body: str, content_type: str, *args: Any, **kwargs: Any) -> requests.Response:
        bodies.append(body)
        return send(body, content_type, *args, **kwargs)

    loop.bot.send = recording  # type: ignore[method-assign]
    try:
        first = loop.bot.click(action_id, value, ALICE, ts)
    finally:
        del loop.bot.send
    retry_headers = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    retry = loop.bot.send(bodies[0], "application/x-www-form-urlencoded", retry_headers)
    second = loop.bot.click(action_id, value, ALICE, ts)
    assert [r.status_code for r in (first, retry, second)] == [200, 200, 200]


def test_shifted_traffic_posts_one_alarm_card_and_its_retrain_starts_one_run(
    loop: Loop, drift_stack: DriftStack
) -> None:
    # Drift-free traffic: the watcher keeps polling and the channel stays empty.
    calm(drift_stack, seed=1)
    time.sleep(FOR_S + 2.0)  # time enough for the alert to fire if it were going to
    loop.metrics.wait_polls(2)
    assert loop.slack.messages() == []

    # Shifted traffic: one card for cut v7, with the score Prometheus holds and the buttons.
    drift(drift_stack, seed=2)
    wait_card(loop, lambda c: True)
    [sample] = drift_stack.prometheus.query(SCORE)
    raw = sample["value"][1]
    first_score = float(raw)
    assert first_score > 1.0
    card = wait_card(loop, lambda c: f"{first_score:.2f}" in card_text(c))
    assert f"{MODEL} v{VERSION}" in card_text(card)
    assert "`brightness`" in card_text(card)
    assert action_ids(card) == ["alarm_retrain", "alarm_snooze_for", "alarm_ignore"]
    plot = loop.slack.wait_for(lambda s: [m for m in thread(loop, card["ts"]) if m["files"]])
    assert loop.slack.file_bytes(plot[0]["files"][0]["id"]).startswith(b"\x89PNG")
    [episode] = open_episodes(loop)

    # Half a window of drift-free images moves the score (still drift: the alert keeps
    # firing); the same card is updated in place.
    drift_stack.send(scenes(WINDOW // 2, seed=3))
    drift_stack.prometheus.wait_for(SCORE, lambda r: bool(r) and r[0]["value"][1] != raw)
    second_score = drift_stack.score()
    assert second_score is not None
    assert 1.0 < second_score < first_score
    card = wait_card(loop, lambda c: f"{second_score:.2f}" in card_text(c))
    updates = loop.slack.calls("chat.update")
    assert updates
    assert {u.args["ts"] for u in updates} == {card["ts"]}

    # Retrain now: a click, Slack's retry and a double click start exactly one run.
    click_twice_and_retry(loop, "alarm_retrain", episode, card["ts"])
    loop.settle()
    assert loop.launcher.launches == 1
    run = loop.bot.services.runbook.by_request(episode)
    assert run is not None
    assert (run.thread_ts, run.channel, run.source) == (card["ts"], CHANNEL, "drift-alarm")
    assert run.params["data"] == DATA  # retrained on the drifting version's data
    run_posts = [
        c
        for c in loop.slack.calls("chat.postMessage")
        if c.args.get("thread_ts") == card["ts"] and run.run_id in str(c.args)
    ]
    assert len(run_posts) == 1  # the run's progress message, threaded under the alarm
    notes = loop.slack.ephemerals(ALICE)
    assert len(notes) == 2
    assert all(f"already running: `{run.run_id}`" in n["text"] for n in notes)
    card = wait_card(loop, lambda c: f"Retrain started by <@{ALICE}>" in card_text(c))
    assert run.run_id in card_text(card)
    assert action_ids(card) == []
    audit = {(r.actor, r.action, r.object, r.outcome) for r in loop.bot.services.store.list_audit()}
    assert (ALICE, "drift_retrain", episode, "launched") in audit
    assert (ALICE, "retrain", run.run_id, "started") in audit


def test_snooze_and_ignore_update_the_card_and_are_audited_and_the_end_resolves_it(
    loop: Loop, drift_stack: DriftStack
) -> None:
    drift(drift_stack, seed=4)
    card = wait_card(loop, lambda c: "alarm_snooze_for" in action_ids(c))
    [episode] = open_episodes(loop)
    store = loop.bot.services.store

    assert loop.bot.click("alarm_snooze", episode, BOB, card["ts"]).status_code == 200
    card = wait_card(loop, lambda c: f"Snoozed by <@{BOB}>" in card_text(c))
    assert action_ids(card) == ["alarm_retrain", "alarm_ignore"]
    loop.slack.wait_for(
        lambda s: any("snoozed this alarm" in m["text"] for m in thread(loop, card["ts"]))
    )
    loop.metrics.wait_polls(2)  # the watcher keeps the card current, and snoozed
    assert f"Snoozed by <@{BOB}>" in card_text(cards(loop)[0])

    assert loop.bot.click("alarm_ignore", episode, CAROL, card["ts"]).status_code == 200
    card = wait_card(loop, lambda c: f"Ignored by <@{CAROL}>" in card_text(c))
    assert action_ids(card) == []

    # A stale Snooze button (an old copy of the card) changes nothing, and says so.
    assert loop.bot.click("alarm_snooze", episode, BOB, card["ts"]).status_code == 200
    [refusal] = loop.slack.wait_for(lambda s: s.ephemerals(BOB))
    assert "already ended or been handled" in refusal["text"]
    loop.settle()
    audit = [(r.actor, r.outcome) for r in store.list_audit(obj=episode)]
    assert (BOB, "snoozed") in audit
    assert (CAROL, "ignored") in audit
    assert (BOB, "snoozed:no-op") in audit
    assert loop.launcher.launches == 0

    # The drift ends: the same card says so, and nothing new is posted.
    calm(drift_stack, seed=5)
    card = wait_card(loop, lambda c: "Input drift resolved" in card_text(c))
    assert action_ids(card) == []
    assert open_episodes(loop) == []
