"""Slack and the backends misbehave; every run still reaches its final state and its card.
The real Bolt app over signed HTTP, the local Slack injecting the faults, a real MLflow store
for the pictures."""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.fakes.launcher import ScriptedLauncher, finished
from tests.fakes.mlflow_store import register_challenger
from tests.fakes.slack import ALICE, CHANNEL, Bot, buttons, eventually, start_bot

PING = "<!channel>"


def start_run(bot: Bot) -> tuple[str, str]:
    bot.slash("/retrain", "epochs=2")
    row = eventually(lambda: (r := bot.services.runbook.recent(1)) and r[0].message_ts and r[0])
    return row.run_id, row.message_ts


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 8), colour).save(out, format="PNG")
    return out.getvalue()


def cards(bot: Bot, channel: str = CHANNEL) -> list[dict]:
    return [m for m in bot.slack.messages(channel) if "ready for review" in m["text"]]


def settled(bot: Bot, run_id: str) -> bool:
    row = bot.services.runbook.get(run_id)
    return row is not None and row.settled


def test_pictures_come_from_mlflow_never_from_a_local_path_in_a_tag(
    bot: Bot, launcher: ScriptedLauncher, tmp_path: Path, bot_mlflow: str
) -> None:
    secret = tmp_path / "environ"
    secret.write_bytes(b"SLACK_BOT_TOKEN=xoxb-very-secret")
    grid = png((200, 10, 10))
    version, mlflow_run = register_challenger(
        bot_mlflow,
        tmp_path / "mlflow",
        "cut",
        {"sample_grid.png": grid, "loss_curve.png": b"SLACK_BOT_TOKEN=xoxb-in-mlflow"},
    )
    run_id, _ = start_run(bot)
    status = finished(version, {"sample_grid": str(secret), "loss_curve": f"file://{secret}"})
    result = dataclasses.replace(
        status["result"], mlflow_run_id=mlflow_run, data_digest=PING, image=f"{PING} & <@U_X>"
    )
    launcher.move(run_id, **{**status, "result": result})
    bot.watcher().tick()

    [card] = cards(bot)
    shown = str(card["blocks"])
    assert PING not in shown
    assert "<@U_X>" not in shown
    assert "&lt;!channel&gt;" in shown
    assert f"<@{ALICE}>" in shown  # the requester, from Slack's own id: a live mention
    files = [f for m in bot.slack.messages(CHANNEL) for f in m["files"]]
    sent = {f["name"]: bot.slack.file_bytes(f["id"]) for f in files}
    # the grid is the version's MLflow artifact; the "curve" in MLflow is no image: left out
    assert sent == {"sample_grid.png": grid}
    assert settled(bot, run_id)


def test_a_gate_reason_from_the_registry_cannot_ping_the_channel(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    run_id, _ = start_run(bot)
    status = finished("3")
    gated = dataclasses.replace(status["result"], gate_passed=False, gate_reason=f"{PING} lol")
    launcher.move(run_id, **{**status, "state": "gated", "result": gated})
    bot.watcher().tick()
    posted = str(bot.slack.messages(CHANNEL))
    assert PING not in posted
    assert "&lt;!channel&gt; lol" in posted


def test_429s_and_a_deleted_run_message_still_end_with_a_card(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    bot.slack.rate_limit(every=3, retry_after_s=0)
    run_id, ts = start_run(bot)
    watcher = bot.watcher()
    launcher.move(run_id, state="running", current_step="train", steps_done=2)
    watcher.tick()
    bot.slack.delete_message(CHANNEL, ts)  # someone deleted the run message mid-run
    launcher.move(run_id, state="running", current_step="evaluate", steps_done=3)
    watcher.tick()
    launcher.move(run_id, **finished("3"))
    watcher.tick()

    [card] = cards(bot)
    assert [b["action_id"] for b in buttons(card)] == ["approve", "reject"]
    approval = bot.services.approvals.get(buttons(card)[0]["value"])  # type: ignore[union-attr]
    assert approval is not None
    assert approval.message_ts == card["ts"]
    [moved] = [m for m in bot.slack.messages(CHANNEL) if m["text"].startswith("Retrain cut")]
    assert "awaiting approval" in moved["text"]  # the run's summary, posted anew
    assert settled(bot, run_id)
    refused = bot.slack.refused()
    assert refused
    assert {status for _, status in refused} == {429}
    # each refused write was sent again: no write was lost to a 429
    # run message, summary, card, and the card's full metric table in its thread
    assert len(bot.slack.calls("chat.postMessage")) == 4
    watcher.tick()
    assert len(cards(bot)) == 1


def test_an_archived_channel_sends_the_card_to_the_requester(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    run_id, _ = start_run(bot)
    bot.slack.channel_state(CHANNEL, archived=True)
    launcher.move(run_id, **finished("3"))
    bot.watcher().tick()
    [card] = cards(bot, f"D{ALICE}")
    assert buttons(card)
    assert settled(bot, run_id)
    assert not cards(bot, CHANNEL)


def test_with_no_channel_and_no_dm_the_run_still_settles(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    run_id, _ = start_run(bot)
    bot.slack.channel_state(CHANNEL, member=False)
    bot.slack.fail_always("conversations.open", "missing_scope")  # no im:write granted
    launcher.move(run_id, state="failed", failed_step="train", error="OOM", finished_at=1.0)
    watcher = bot.watcher()
    watcher.tick()
    assert settled(bot, run_id)
    assert bot.services.runbook.get(run_id).state == "failed"  # type: ignore[union-attr]
    calls = len(bot.slack.calls())
    watcher.tick()
    assert len(bot.slack.calls()) == calls  # not tried forever


def test_a_run_deleted_in_kfp_fails_with_a_reason_and_is_not_polled_again(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    run_id, ts = start_run(bot)
    launcher.forget(run_id)
    watcher = bot.watcher()
    watcher.tick()
    row = bot.services.runbook.get(run_id)
    assert row is not None
    assert row.state == "failed"
    assert row.settled
    [reply] = [m for m in bot.slack.messages(CHANNEL) if m["thread_ts"] == ts]
    assert "no longer exists" in str(reply["blocks"])
    polls = len(bot.slack.calls())
    watcher.tick()
    assert len(bot.slack.calls()) == polls  # settled: nothing more to say or ask


def test_an_upload_slack_refuses_does_not_keep_the_run_open(
    bot: Bot, launcher: ScriptedLauncher, tmp_path: Path, bot_mlflow: str
) -> None:
    version, mlflow_run = register_challenger(
        bot_mlflow, tmp_path / "mlflow", "cut", {"sample_grid.png": png((1, 2, 3))}
    )
    run_id, _ = start_run(bot)
    status = finished(version, {"sample_grid": f"runs:/{mlflow_run}/sample_grid.png"})
    launcher.move(run_id, **status)
    bot.slack.fail_always("files.completeUploadExternal", "not_allowed_token_type")
    bot.watcher().tick()
    [card] = cards(bot)
    replies = [m for m in bot.slack.messages(CHANNEL) if m["thread_ts"] == card["ts"]]
    notes = [m for m in replies if "could not upload" in m["text"]]
    assert len(notes) == 1
    assert len(replies) == 2  # the card's metric table, and the note
    assert settled(bot, run_id)


def test_one_broken_run_does_not_stop_the_others(
    tmp_path: Path, launcher: ScriptedLauncher
) -> None:
    bot = start_bot(tmp_path, launcher)
    try:
        first, _ = start_run(bot)
        bot.slash("/retrain", "epochs=2 model=cyclegan", trigger_id="t2")
        second = eventually(
            lambda: (r := bot.services.runbook.recent(2)) and r[0].run_id != first and r[0]
        ).run_id
        launcher.move(first, state="running", finished_at=time.time(), result="broken")
        launcher.move(second, **finished("3"))
        watcher = bot.watcher()
        watcher.tick()
        assert cards(bot)  # the second run's card, though the first one raised
        assert not settled(bot, first)
    finally:
        bot.stop()


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ({"archived": True}, "archived"),
        ({"member": False}, "not a member"),
        ({"exists": False}, "cannot see this channel"),
    ],
)
def test_retrain_where_the_bot_cannot_post_is_answered_and_launches_nothing(
    bot: Bot, launcher: ScriptedLauncher, state: dict[str, bool], said: str
) -> None:
    bot.slack.channel_state(CHANNEL, **state)
    assert bot.slash("/retrain", "epochs=2").status_code == 200
    [answer] = bot.slack.wait_for(lambda s: s.calls("response_url"))
    assert said in answer.args["text"]
    assert "Nothing was started" in answer.args["text"]
    assert launcher.launches == 0
    assert not bot.services.runbook.recent(1)
    assert not bot.slack.calls("chat.postMessage")
