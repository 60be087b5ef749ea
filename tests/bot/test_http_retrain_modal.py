"""`/retrain` with no text opens a modal; its submission starts the run, through the real Bolt
app in HTTP mode, with signed requests and the local Slack Web API. The form is an entry point
like the typed command: the gate checks its bounds in the submission's ack and again at
launch, and a refusal is an error on the field that crossed, audited with path `modal`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from ganops.pipeline.params import MODELS
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import ALICE, CAROL, CHANNEL, Bot, eventually, start_bot

OTHER_CHANNEL = "C_OTHER"


@pytest.fixture
def bot(tmp_path: Path, launcher: ScriptedLauncher) -> Iterator[Bot]:
    """Two configured channels, `s3://b/` allowed to anyone; CAROL is the approver."""
    bot = start_bot(
        tmp_path,
        launcher,
        GANOPS_CHANNEL=f"{CHANNEL},{OTHER_CHANNEL}",
        GANOPS_DATA_ALLOW="s3://b/",
        GANOPS_MAX_GPUS="2",
    )
    yield bot
    bot.stop()


def open_modal(
    bot: Bot, channel: str = CHANNEL, trigger_id: str = "trig-modal", user: str = ALICE
) -> dict[str, Any]:
    """Type `/retrain` alone in `channel`; return the view the bot opened."""
    before = len(bot.slack.calls("views.open"))
    form = bot.slash_form("/retrain", "", user, trigger_id) | {"channel_id": channel}
    resp = bot.send(urlencode(form), "application/x-www-form-urlencoded")
    assert resp.status_code == 200
    assert resp.text == ""
    call = bot.slack.wait_for(lambda s: s.calls("views.open")[before:] or None)[0]
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
    numbers = ["epochs", "steps", "lr", "batch_size", "gpus", "nodes", "image_size", "seed"]
    assert ids == ["model", "preset", "data", *numbers]  # no auto_deploy: ALICE approves nothing
    [model] = [b for b in view["blocks"] if b.get("block_id") == "model"]
    assert [o["value"] for o in model["element"]["options"]] == list(MODELS)
    inputs = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    limits = {
        k: (inputs[k]["element"]["type"], inputs[k]["element"]["min_value"],
            inputs[k]["element"]["max_value"]) for k in numbers
    }  # fmt: skip
    assert limits["gpus"] == ("number_input", "0", "16")
    assert limits["nodes"] == ("number_input", "1", "64")
    assert limits["lr"] == ("number_input", "0.0000001", "1")
    assert inputs["lr"]["element"]["is_decimal_allowed"] is True
    assert inputs["steps"]["element"]["is_decimal_allowed"] is False
    hints = {k: b["hint"]["text"] for k, b in inputs.items()}
    assert "1..10000" in hints["epochs"]
    assert "0..16" in hints["gpus"]
    assert "1e-07..1" in hints["lr"]
    # the bounds, and who may go past them
    assert "GANOPS_MAX_GPUS=2; past it, an approver must run it" in hints["gpus"]
    assert "GANOPS_MAX_NODES=1; past it, an approver must run it" in hints["nodes"]
    assert "GANOPS_MAX_STEPS=20000; past it, an approver must run it" in hints["steps"]
    assert "GANOPS_DATA_ALLOW (s3://b/)" in hints["data"]
    assert json.loads(view["private_metadata"])["c"] == CHANNEL
    assert launcher.launches == 0  # opening the modal starts nothing


def test_an_approver_also_gets_auto_deploy(bot: Bot) -> None:
    view = open_modal(bot, user=CAROL, trigger_id="trig-carol")
    [auto] = [b for b in view["blocks"] if b.get("block_id") == "auto_deploy"]
    assert auto["element"]["initial_option"]["value"] == "false"
    assert [o["value"] for o in auto["element"]["options"]] == ["false", "true"]


@pytest.mark.parametrize(
    ("typed", "field", "problem"),
    [
        ({"epochs": "two"}, "epochs", "epochs='two' is not an integer"),
        ({"gpus": "99"}, "gpus", "gpus=99 is out of range (0..16)"),
        ({"nodes": "65"}, "nodes", "nodes=65 is out of range (1..64)"),
        ({"seed": "-1"}, "seed", "seed=-1 is out of range"),
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
    bot.settle()  # a (wrong) lazy launch has run by now
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
    bot.settle()
    assert launcher.launches == 1
    row = eventually(lambda: bot.services.runbook.get(run.run_id))
    assert row.source == "modal"
    assert row.channel == OTHER_CHANNEL
    [audit] = bot.services.store.list_audit(obj=run.run_id)
    assert (audit.detail, audit.path) == ({"source": "modal"}, "modal")


def test_retrain_with_text_still_launches_directly(bot: Bot, launcher: ScriptedLauncher) -> None:
    assert bot.slash("/retrain", "epochs=2").status_code == 200
    bot.slack.wait_for(lambda s: s.messages(CHANNEL))
    assert bot.slack.calls("views.open") == []
    assert launcher.launches == 1


def refusals(bot: Bot, user: str) -> list[tuple[str, str, str | None, str | None]]:
    rows = bot.services.store.list_audit(100)
    return [(r.action, r.outcome, r.path, r.detail.get("bound")) for r in rows if r.actor == user]


@pytest.mark.parametrize(
    ("typed", "field", "named"),
    [
        ({"steps": "50000"}, "steps", "steps=50000 is over GANOPS_MAX_STEPS=20000"),
        ({"epochs": "500"}, "epochs", "epochs=500 is over GANOPS_MAX_EPOCHS=200"),
        ({"gpus": "3"}, "gpus", "gpus=3 is over GANOPS_MAX_GPUS=2"),
        (
            {"gpus": "1", "nodes": "8"},
            "nodes",
            "gpus=1 × nodes=8 = 8 GPUs is over GANOPS_MAX_GPUS=2",
        ),
        ({"gpus": "1", "nodes": "2"}, "nodes", "nodes=2 is over GANOPS_MAX_NODES=1"),
        ({"data": "s3://other/p"}, "data", "data='s3://other/p' is outside GANOPS_DATA_ALLOW"),
        ({"data": "http://169.254.169.254/"}, "data", "169.254.169.254 is a link-local address"),
    ],
)
def test_past_a_bound_the_form_says_so_on_its_field_audits_it_and_starts_nothing(
    bot: Bot, launcher: ScriptedLauncher, typed: dict[str, str], field: str, named: str
) -> None:
    view = open_modal(bot)
    answer = bot.interact(submission(view, typed)).json()
    assert answer["response_action"] == "errors"
    assert list(answer["errors"]) == [field]
    assert named in answer["errors"][field]
    assert "an approver must run it" in answer["errors"][field]
    bound = named.split(" is over ")[-1].split("=")[0] if " is over " in named else None
    bot.settle()  # a (wrong) lazy launch has run by now
    assert launcher.launches == 0
    assert bot.slack.messages() == []
    [(action, outcome, path, audited)] = refusals(bot, ALICE)
    assert (action, outcome, path) == ("retrain", "refused", "modal")
    assert audited == (bound or "GANOPS_DATA_ALLOW")
    # the same form from an approver starts the run
    carols = open_modal(bot, user=CAROL, trigger_id="trig-carol")
    assert bot.interact(submission(carols, typed, user=CAROL)).text == ""
    eventually(lambda: launcher.launches == 1)


def test_a_forged_auto_deploy_from_a_non_approver_is_refused_on_the_form(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    view = open_modal(bot)  # ALICE's form has no auto_deploy field; she adds one by hand
    payload = submission(view, {})
    payload["view"]["state"]["values"]["auto_deploy"] = {
        "auto_deploy": {"type": "static_select", "selected_option": {"value": "true"}}
    }
    answer = bot.interact(payload).json()
    assert answer["response_action"] == "errors"
    assert "`auto_deploy=true` is for approvers only" in answer["errors"]["model"]
    bot.settle()
    assert launcher.launches == 0
    assert refusals(bot, ALICE) == [("auto_deploy", "refused", "modal", "auto_deploy")]


def test_the_launch_asks_the_gate_again(bot: Bot, launcher: ScriptedLauncher) -> None:
    """Allowed in the ack (CAROL approves), refused at launch (she left the approvers): the
    second answer wins, is audited with path `modal`, and nothing starts."""
    view = open_modal(bot, user=CAROL, trigger_id="trig-carol")
    answers = iter([True, False])
    book = bot.services.approvals
    assert book is not None
    book.is_approver = lambda user: next(answers, False)  # type: ignore[method-assign]
    assert bot.interact(submission(view, {"steps": "50000"}, user=CAROL)).text == ""
    [told] = bot.slack.wait_for(lambda s: s.ephemerals(CAROL))
    assert "GANOPS_MAX_STEPS" in told["text"]
    eventually(lambda: bot.executor.busy == 0)
    assert launcher.launches == 0
    assert refusals(bot, CAROL) == [("retrain", "refused", "modal", "GANOPS_MAX_STEPS")]
