"""`/retrain` with no text opens a modal; its submission starts the run, through the real Bolt
app in HTTP mode, with signed requests and the local Slack Web API."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from ganops.pipeline.params import MODELS
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import ALICE, CHANNEL, Bot, eventually

OTHER_CHANNEL = "C_OTHER"


def open_modal(bot: Bot, channel: str = CHANNEL, trigger_id: str = "trig-modal") -> dict[str, Any]:
    """Type `/retrain` alone in `channel`; return the view the bot opened."""
    form = bot.slash_form("/retrain", "", ALICE, trigger_id) | {"channel_id": channel}
    resp = bot.send(urlencode(form), "application/x-www-form-urlencoded")
    assert resp.status_code == 200
    assert resp.text == ""
    [call] = bot.slack.wait_for(lambda s: s.calls("views.open"))
    assert call.args["trigger_id"] == trigger_id
    view = call.args["view"]
    return json.loads(view) if isinstance(view, str) else dict(view)


def submission(view: dict[str, Any], typed: dict[str, str], user: str = ALICE) -> dict[str, Any]:
    """A `view_submission` payload for the opened `view`, with `typed` in its fields (other
    fields keep their initial values), shaped as Slack sends it."""
    values: dict[str, dict[str, Any]] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        key, action = block["block_id"], element["action_id"]
        if element["type"] == "static_select":
            value = typed.get(key) or (element.get("initial_option") or {}).get("value")
            picked = {"text": {"type": "plain_text", "text": value}, "value": value}
            values[key] = {
                action: {"type": "static_select", "selected_option": picked if value else None}
            }
        else:
            text = typed.get(key, element.get("initial_value"))
            values[key] = {action: {"type": "plain_text_input", "value": text or None}}
    return {
        "type": "view_submission",
        "team": {"id": "T_TEST", "domain": "test"},
        "user": {"id": user, "username": user.lower(), "team_id": "T_TEST"},
        "api_app_id": "A_TEST",
        "trigger_id": f"sub-{time.time_ns()}",
        "view": view | {"id": "V_MODAL", "state": {"values": values}},
    }


def test_retrain_alone_opens_the_modal_with_every_field_and_its_range(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    view = open_modal(bot)
    assert view["type"] == "modal"
    ids = [b.get("block_id") for b in view["blocks"] if b["type"] == "input"]
    assert ids == ["model", "preset", "data", "epochs", "steps", "lr", "gpus", "image_size"]
    [model] = [b for b in view["blocks"] if b.get("block_id") == "model"]
    assert [o["value"] for o in model["element"]["options"]] == list(MODELS)
    hints = {
        b["block_id"]: b.get("hint", {}).get("text", "") for b in view["blocks"] if "hint" in b
    }
    assert "1..10000" in hints["epochs"]
    assert "0..16" in hints["gpus"]
    assert "1e-07..1" in hints["lr"]
    assert json.loads(view["private_metadata"])["c"] == CHANNEL
    assert launcher.launches == 0  # opening the modal starts nothing


@pytest.mark.parametrize(
    ("typed", "field", "problem"),
    [
        ({"epochs": "two"}, "epochs", "epochs='two' is not an integer"),
        ({"gpus": "99"}, "gpus", "gpus=99 is out of range (0..16)"),
        ({"lr": "fast"}, "lr", "lr='fast' is not a number"),
        ({"image_size": "30"}, "image_size", "image_size=30 must be a multiple of 4"),
        ({"data": "ftp://x/y"}, "data", "unsupported scheme 'ftp'"),
    ],
)
def test_a_bad_value_comes_back_as_an_error_on_its_field_and_starts_nothing(
    bot: Bot, launcher: ScriptedLauncher, typed: dict[str, str], field: str, problem: str
) -> None:
    view = open_modal(bot)
    resp = bot.interact(submission(view, typed))
    assert resp.status_code == 200
    answer = resp.json()
    assert answer["response_action"] == "errors"
    assert list(answer["errors"]) == [field]
    assert problem in answer["errors"][field]
    time.sleep(0.5)  # give a (wrong) lazy launch the chance to happen
    assert launcher.launches == 0
    assert bot.slack.messages() == []


def test_a_good_submission_starts_one_run_with_its_params_in_the_commands_channel(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    view = open_modal(bot, channel=OTHER_CHANNEL)
    payload = submission(
        view, {"model": "cyclegan", "epochs": "3", "lr": "2e-4", "gpus": "0", "data": "s3://b/p"}
    )
    resp = bot.interact(payload)
    assert resp.status_code == 200
    assert resp.text == ""  # acked empty: the modal closes
    [message] = bot.slack.wait_for(lambda s: s.messages(OTHER_CHANNEL))
    assert bot.slack.messages(CHANNEL) == []
    text = str(message["blocks"])
    assert f"<@{ALICE}>" in text
    assert "via modal" in text
    for shown in ("model=cyclegan", "epochs=3", "lr=0.0002", "data=s3://b/p"):
        assert shown in text
    run = launcher.status(launcher.only_run())
    assert run.params["model"] == "cyclegan"
    assert run.params["epochs"] == 3
    assert run.params["lr"] == pytest.approx(2e-4)
    assert run.params["data"] == "s3://b/p"
    assert run.params["steps"] is None  # an empty field keeps the preset's value
    # Slack retrying the submission (same modal, same command) starts nothing new
    assert bot.interact(payload).status_code == 200
    time.sleep(0.5)
    assert launcher.launches == 1
    row = eventually(lambda: bot.services.runbook.get(run.run_id))
    assert row.source == "modal"
    assert row.channel == OTHER_CHANNEL
    [audit] = bot.services.store.list_audit(obj=run.run_id)
    assert audit.detail == {"source": "modal"}


def test_retrain_with_text_still_launches_directly(bot: Bot, launcher: ScriptedLauncher) -> None:
    assert bot.slash("/retrain", "epochs=2").status_code == 200
    bot.slack.wait_for(lambda s: s.messages(CHANNEL))
    assert bot.slack.calls("views.open") == []
    assert launcher.launches == 1
