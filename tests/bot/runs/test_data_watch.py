"""New data offers a retrain: files added to a watched folder give exactly one card (none below
the minimum, none again after a restart); Retrain / Not now are for approvers and audited.
The real store and Bolt app over signed HTTP, the local Slack Web API, a scripted launcher."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from PIL import Image

from ganops.bot.ports import ModelVersionInfo
from ganops.bot.runs.data_watch import DataOffers, DataWatcher
from ganops.bot.services import Services
from ganops.bot.settings import Settings
from tests.fakes.approvals import MemoryRegistry
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import ALICE, CAROL, CHANNEL, Bot, eventually, make_services, start_bot

REGISTERED_AT = time.time() - 3600.0


class Registry(MemoryRegistry):
    """Versions registered an hour ago, which is when the champion's snapshot was taken."""

    def _info(self, model: str, version: str) -> ModelVersionInfo:
        info = super()._info(model, version)
        return ModelVersionInfo(info.model, info.version, info.aliases, info.tags, REGISTERED_AT)


def add_images(folder: Path, n: int, *, old: bool = False, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for i in range(start, start + n):
        path = folder / f"img{i:04d}.png"
        pixels = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(path)
        if old:  # there before the champion was registered
            os.utime(path, (REGISTERED_AT - 60, REGISTERED_AT - 60))


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    folder = tmp_path / "incoming"
    add_images(folder, 30, old=True)
    return folder


@pytest.fixture
def bot(tmp_path: Path, watched: Path) -> Iterator[Bot]:
    launcher = ScriptedLauncher(url_base="http://kfp.test")
    registry = Registry()
    registry.add("cut", "4")
    registry.set_alias("cut", "champion", "4")
    registry.set_tags("cut", "4", {"data_digest": "sha256:abc", "params": '{"steps": 50}'})

    def services(settings: Settings) -> Services:
        return make_services(settings, launcher, registry=registry)

    bot = start_bot(tmp_path, launcher, services, GANOPS_DATA_WATCH=str(watched))
    yield bot
    bot.stop()


def watcher(bot: Bot, minimum: int = 20) -> DataWatcher:
    source = bot.settings.data_watch
    assert source is not None
    return DataWatcher(bot.services, source=source, minimum=minimum, channel=CHANNEL)


def cards(bot: Bot) -> list[dict[str, Any]]:
    return [
        m
        for m in bot.slack.messages(CHANNEL)
        if not m["thread_ts"] and "New training data" in str(m["blocks"])
    ]


def offer(bot: Bot, watched: Path, start: int) -> tuple[dict[str, Any], str]:
    """25 new images, one tick: the card and its offer id."""
    add_images(watched, 25, start=start)
    watcher(bot).tick()
    [card] = cards(bot)
    return card, card["blocks"][-1]["elements"][0]["value"]


def test_new_files_give_exactly_one_card_and_a_restart_no_second(bot: Bot, watched: Path) -> None:
    job = watcher(bot)
    job.tick()
    assert cards(bot) == []  # 30 files, all in the champion's snapshot already
    add_images(watched, 12, start=100)
    job.tick()
    assert cards(bot) == []  # 12 new: below the minimum of 20
    add_images(watched, 13, start=200)
    job.tick()
    job.tick()
    [card] = cards(bot)
    assert "*25* new images" in str(card["blocks"])
    thumbs = [m for m in bot.slack.messages(CHANNEL) if m["thread_ts"] == card["ts"]]
    assert len(thumbs) == 1
    assert thumbs[0]["files"]
    watcher(bot).tick()  # a restarted bot: a new job on the same state
    assert len(cards(bot)) == 1
    offered = [r for r in bot.services.store.list_audit() if r.action == "data_offer"]
    assert [r.outcome for r in offered] == ["offered"]


def test_retrain_is_for_approvers_audited_and_starts_one_run(bot: Bot, watched: Path) -> None:
    card, offer_id = offer(bot, watched, 300)
    bot.click("data_retrain", offer_id, ALICE, card["ts"])
    eventually(lambda: bot.slack.ephemerals(ALICE))
    assert DataOffers(bot.services.store).get(offer_id).state == "offered"  # type: ignore[union-attr]
    bot.click("data_retrain", offer_id, CAROL, card["ts"])
    bot.click("data_retrain", offer_id, CAROL, card["ts"])  # a double click
    offers = DataOffers(bot.services.store)
    run_id = eventually(lambda: offers.get(offer_id).run_id)  # type: ignore[union-attr]
    launcher = cast(ScriptedLauncher, bot.services.launcher)
    assert launcher.launches == 1
    params = launcher.status(run_id).params
    assert (params["data"], params["steps"]) == (str(watched), 50)
    updated = eventually(lambda: [m for m in cards(bot) if "started a retrain" in str(m["blocks"])])
    assert "data_retrain" not in str(updated[0]["blocks"])
    outcomes = [(r.actor, r.outcome) for r in bot.services.store.list_audit(obj=offer_id)]
    assert (ALICE, "refused") in outcomes
    [refused] = [r for r in bot.services.store.list_audit(obj=offer_id) if r.actor == ALICE]
    assert (refused.action, refused.path, refused.detail["bound"]) == (
        "data_retrain",
        "button",
        "data_retrain",
    )  # through the gate, with its path (it had none)
    assert (CAROL, "retraining") in outcomes


def test_not_now_closes_the_offer(bot: Bot, watched: Path) -> None:
    card, offer_id = offer(bot, watched, 400)
    bot.click("data_dismiss", offer_id, CAROL, card["ts"])
    offers = DataOffers(bot.services.store)
    eventually(lambda: offers.get(offer_id).state == "dismissed")  # type: ignore[union-attr]
    assert cast(ScriptedLauncher, bot.services.launcher).launches == 0
