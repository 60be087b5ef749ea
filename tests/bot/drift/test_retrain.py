"""Retrain now with capture on: it trains on the episode's captured inputs, or says how many
are missing and launches nothing. Through the real Bolt app over signed HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from ganops.bot.drift.watch import AlarmBook, render_card
from ganops.bot.ports import DriftAlert
from ganops.model.serving.capture import CaptureConfig, CaptureSink
from ganops.pipeline.captured import load_specs
from tests.fakes.approvals import MemoryRegistry
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import CAROL as APPROVER  # Retrain now is for approvers (bot.policy)
from tests.fakes.slack import CHANNEL as BOT_CHANNEL
from tests.fakes.slack import Bot, eventually, make_services, start_bot

MIN = 20


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[Bot]:
    launcher = ScriptedLauncher(url_base="http://kfp.test")
    registry = MemoryRegistry()
    registry.add("cut", "3")
    params = {"model": "cut", "data": "synthetic", "synthetic_n": 40, "seed": 2, "captured": ""}
    registry.tags[("cut", "3")] = {"params": json.dumps(params)}
    bot = start_bot(
        tmp_path,
        launcher,
        lambda s: make_services(s, launcher, registry=registry),
        GANOPS_CAPTURE_RATE="1",
        GANOPS_CAPTURE_URI=str(tmp_path / "captured"),
        GANOPS_DRIFT_MIN_CAPTURED=str(MIN),
    )
    yield bot
    bot.stop()


def capture(bot: Bot, n: int, version: str = "3") -> None:
    uri = bot.settings.capture_uri
    assert uri is not None
    sink = CaptureSink(CaptureConfig(rate=1.0, uri=uri), model="cut", version=version)
    sink.offer(np.random.default_rng(0).random((n, 8, 8, 3), dtype=np.float32))
    sink.close()


def open_alarm(bot: Bot) -> tuple[str, str]:
    book = AlarmBook(bot.services.store)
    alert = DriftAlert(model="cut", version="3", score=2.5, features={"brightness": 3.0})
    episode = book.open(alert, BOT_CHANNEL).episode_id
    render_card(book, bot.services.slack, episode, BOT_CHANNEL)
    ts = book.row_meta(episode)[1]
    assert ts is not None
    return episode, ts


def thread(bot: Bot, ts: str) -> list[str]:
    return [m["text"] for m in bot.slack.messages(BOT_CHANNEL) if m.get("thread_ts") == ts]


def test_too_few_captured_inputs_say_how_many_are_missing_and_launch_nothing(bot: Bot) -> None:
    capture(bot, 40)  # before the alarm: maybe of the old kind, not counted
    episode, ts = open_alarm(bot)
    capture(bot, 7)
    capture(bot, 30, version="2")  # another version's inputs do not count
    bot.click("alarm_retrain", episode, APPROVER, ts)
    [note] = bot.slack.wait_for(lambda s: s.ephemerals(APPROVER))
    assert "7 inputs captured during this episode, 20 needed" in note["text"]
    assert "13 missing" in note["text"]
    eventually(lambda: any("13 missing" in t for t in thread(bot, ts)))
    assert cast(ScriptedLauncher, bot.services.launcher).launches == 0
    assert AlarmBook(bot.services.store).get(episode).retrain_run_id is None  # type: ignore[union-attr]


def test_enough_captured_inputs_retrain_on_them_with_the_champions_data(bot: Bot) -> None:
    before = time.time()
    episode, ts = open_alarm(bot)
    capture(bot, 24)
    bot.click("alarm_retrain", episode, APPROVER, ts)
    book = AlarmBook(bot.services.store)
    run_id = eventually(lambda: book.get(episode).retrain_run_id)  # type: ignore[union-attr]
    launcher = cast(ScriptedLauncher, bot.services.launcher)
    params = launcher.status(run_id).params
    assert (params["data"], params["synthetic_n"], params["seed"]) == ("synthetic", 40, 2)
    [spec] = load_specs(params["captured"])
    assert (spec.model, spec.version, spec.uri) == ("cut", "3", bot.settings.capture_uri)
    assert before <= spec.since < spec.until
    note = eventually(lambda: [t for t in thread(bot, ts) if "held out" in t])
    assert "plus 16 of the 24 inputs captured" in note[0]
    assert "judged on the new inputs" in note[0]
