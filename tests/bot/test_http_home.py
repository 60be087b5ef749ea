"""The App Home tab through the real Bolt app over signed HTTP: `app_home_opened` ->
`views.publish` with runs in flight, pending approvals, champions and open drift alarms;
Approve from the tab goes through the card's own handler."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ganops.bot.blocks import blocks_to_dicts
from ganops.bot.blocks.home import START_RETRAIN
from ganops.bot.blocks.runs import CardView, results_card
from ganops.bot.drift.alarms import AlarmBook
from ganops.bot.ports import Approval, DriftAlert
from tests.fakes.approvals import MemoryRegistry, RecordingDeployer
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import (
    ALICE,
    CAROL,
    CHANNEL,
    Bot,
    eventually,
    make_services,
    start_bot,
)
from tests.fakes.slack import (
    buttons as all_buttons,
)


@pytest.fixture
def registry() -> MemoryRegistry:
    registry = MemoryRegistry()
    registry.add("cut", "2", "3")
    registry.aliases |= {("cut", "champion"): "2", ("cut", "challenger"): "3"}
    registry.tags |= {
        ("cut", "2"): {"deploy_score": "0.64"},
        ("cut", "3"): {"deploy_score": "0.71"},
    }
    return registry


@pytest.fixture
def deployer() -> RecordingDeployer:
    return RecordingDeployer()


@pytest.fixture
def bot(
    tmp_path: Path,
    launcher: ScriptedLauncher,
    registry: MemoryRegistry,
    deployer: RecordingDeployer,
) -> Iterator[Bot]:
    bot = start_bot(tmp_path, launcher, lambda s: make_services(s, launcher, registry, deployer))
    yield bot
    bot.stop()


def busy_state(bot: Bot, launcher: ScriptedLauncher) -> Approval:
    """A run training, a cyclegan v4 awaiting a decision, a firing drift alarm on cut v2."""
    bot.slash("/retrain", "epochs=2")
    eventually(lambda: bot.services.runbook.get("run-1"))
    launcher.move(
        "run-1", state="running", current_step="train", steps_done=2, train_step=5, train_total=10
    )
    assert bot.services.approvals is not None
    approval = bot.services.approvals.request(
        model="cyclegan",
        version="4",
        model_uri="models:/ganops-cyclegan/4",
        requested_by=ALICE,
        channel=CHANNEL,
    )
    alert = DriftAlert(model="cut", version="2", score=2.41, features={"brightness": 3.1})
    AlarmBook(bot.services.store).open(alert, CHANNEL)
    return approval


def buttons(view: dict[str, Any]) -> list[dict[str, Any]]:
    """The approval buttons on the tab (not *Start a retrain*, which everyone has)."""
    return [b for b in all_buttons(view) if b["action_id"] != START_RETRAIN]


def open_home(bot: Bot, user: str) -> dict[str, Any]:
    before = bot.slack.home(user)
    event = {"type": "app_home_opened", "user": user, "channel": "D_HOME", "tab": "home"}
    event["event_ts"] = str(time.time())
    assert bot.event(event).status_code == 200
    return eventually(lambda: (h := bot.slack.home(user)) != before and h)


def test_the_home_tab_shows_runs_approvals_models_and_alarms(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    approval = busy_state(bot, launcher)
    home = open_home(bot, CAROL)
    assert home["type"] == "home"
    text = str(home["blocks"])
    assert "run-1" in text
    assert "train · step 5/10 (50%)" in text  # the launcher's live status, not the row's
    assert "deploy of cyclegan v4" in text.lower()
    assert "champion v2 (deploy score 0.6400)" in text
    assert "challenger v3 (deploy score 0.7100)" in text
    assert "cut v2" in text
    assert "score 2.41" in text
    assert "brightness" in text
    # CAROL approves: the card's own buttons, carrying only the approval id
    assert [(b["action_id"], b["value"]) for b in buttons(home)] == [
        ("approve", approval.approval_id),
        ("reject", approval.approval_id),
    ]


def test_a_non_approver_sees_the_approval_without_buttons(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    busy_state(bot, launcher)
    home = open_home(bot, ALICE)
    assert "deploy of cyclegan v4" in str(home["blocks"]).lower()
    assert buttons(home) == []


def test_mlflow_and_kfp_down_show_the_rest(
    bot: Bot, launcher: ScriptedLauncher, registry: MemoryRegistry
) -> None:
    busy_state(bot, launcher)
    registry.fail = True
    launcher.down = True
    home = open_home(bot, CAROL)
    text = str(home["blocks"])
    assert "Models are not shown: MLflow at memory:// is unreachable" in text
    assert text.count("The pipeline backend did not answer") == 1
    assert "run-1" in text  # as the bot last saw it
    assert "cut v2" in text
    assert len(buttons(home)) == 2


def home_click(bot: Bot, action_id: str, approval: Approval, user: str) -> None:
    payload = {
        "type": "block_actions",
        "team": {"id": "T_TEST", "domain": "test"},
        "user": {"id": user, "username": user.lower(), "team_id": "T_TEST"},
        "api_app_id": "A_TEST",
        "container": {"type": "view", "view_id": f"VH_{user}"},
        "trigger_id": f"click-{time.time_ns()}",
        "view": bot.slack.home(user),
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": f"approval:{approval.approval_id}",
                "value": approval.approval_id,
                "action_ts": str(time.time()),
            }
        ],
    }
    assert bot.interact(payload).status_code == 200


def test_approve_from_the_home_tab_decides_once_and_refreshes_the_tab(
    bot: Bot, launcher: ScriptedLauncher, deployer: RecordingDeployer
) -> None:
    approval = busy_state(bot, launcher)
    card = results_card(
        CardView(run_id="run-0", model="cyclegan", version="4", requested_by=ALICE, metrics={}),
        approval.approval_id,
    )
    posted = bot.services.slack.chat_postMessage(channel=CHANNEL, text="card", blocks=card)
    assert bot.services.approvals is not None
    bot.services.approvals.attach_message(
        approval.approval_id, CHANNEL, posted["ts"], blocks_to_dicts(card)
    )
    home = open_home(bot, CAROL)
    home_click(bot, "approve", approval, CAROL)
    eventually(lambda: deployer.calls)
    fresh = eventually(lambda: (h := bot.slack.home(CAROL)) != home and h)
    assert buttons(fresh) == []  # nothing pending any more
    # the card in the channel shows the decision too, found by the approval's channel and ts
    eventually(lambda: "Approved by" in str(bot.slack.messages(CHANNEL)))
    [shown] = [m for m in bot.slack.messages(CHANNEL) if m["ts"] == posted["ts"]]
    assert buttons(shown) == []
    assert f"<@{CAROL}>" in str(shown["blocks"])
    assert deployer.calls == [("cyclegan", "4", "models:/ganops-cyclegan/4")]
    assert bot.services.approvals is not None
    decided = bot.services.approvals.get(approval.approval_id)
    assert decided is not None
    assert decided.state == "approved"
    assert decided.decided_by == CAROL


def test_a_refused_click_from_the_home_tab_is_answered_in_the_cards_channel(
    bot: Bot, launcher: ScriptedLauncher, deployer: RecordingDeployer
) -> None:
    approval = busy_state(bot, launcher)
    open_home(bot, ALICE)
    home_click(bot, "approve", approval, ALICE)  # ALICE requested it and is no approver
    [note] = bot.slack.wait_for(lambda s: s.ephemerals(ALICE))
    assert note["channel"] == CHANNEL
    assert deployer.calls == []
