"""The run watcher: progress in place, outcomes, the results card with its pictures, and
exactly-once posting across restarts. The app runs in HTTP mode against a local Slack."""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image

from ganops.bot.adapters.prometheus import PrometheusMetrics
from ganops.bot.runs.start import POST_EVENT
from ganops.bot.runs.watch import ChannelLimiter
from ganops.bot.scheduler import build_jobs
from tests.fakes.approvals import MemoryRegistry
from tests.fakes.launcher import ScriptedLauncher, finished
from tests.fakes.mlflow_store import register_challenger
from tests.fakes.slack import (
    ALICE,
    CAROL,
    CHANNEL,
    Bot,
    buttons,
    eventually,
    make_services,
    start_bot,
)


def start_run(bot: Bot, text: str = "epochs=2") -> tuple[str, str]:
    bot.slash("/retrain", text)
    row = eventually(lambda: (r := bot.services.runbook.recent(1)) and r[0].message_ts and r[0])
    return row.run_id, row.message_ts


def updates_of(bot: Bot, ts: str) -> list[dict]:
    return [c.args for c in bot.slack.calls("chat.update") if c.args["ts"] == ts]


def png(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", (48, 16), colour).save(path)
    return path


def test_progress_updates_the_run_message_in_place_only_when_it_changed(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    run_id, ts = start_run(bot)
    watcher = bot.watcher()
    launcher.move(run_id, state="running", current_step="train", steps_done=2,
                  train_step=10, train_total=100, losses={"G": 0.91, "D": 0.42})  # fmt: skip
    watcher.tick()
    watcher.tick()  # nothing changed: no second update
    launcher.move(run_id, steps_done=2, train_step=60, losses={"G": 0.55, "D": 0.47})
    watcher.tick()
    first, second = updates_of(bot, ts)
    assert "stage 3/6 · train" in first["text"]
    assert "step 10/100" in first["text"]
    assert "D 0.420" in str(first["blocks"])
    assert "G 0.910" in str(first["blocks"])
    assert "step 60/100" in second["text"]
    [message] = [m for m in bot.slack.messages(CHANNEL) if m["ts"] == ts]
    assert message["edited"] == 2
    assert "G 0.550" in str(message["blocks"])
    assert len(bot.slack.messages(CHANNEL)) == 1  # updated, never re-posted


def test_updates_are_rate_limited_per_channel(bot: Bot, launcher: ScriptedLauncher) -> None:
    run_id, ts = start_run(bot)
    now = [1000.0]
    watcher = bot.watcher(ChannelLimiter(1.0, clock=lambda: now[0]))
    launcher.move(run_id, state="running", current_step="ingest")
    watcher.tick()
    launcher.move(run_id, steps_done=1, current_step="validate")
    now[0] += 0.5
    watcher.tick()  # within the same second: held back
    assert len(updates_of(bot, ts)) == 1
    now[0] += 0.6
    watcher.tick()  # the latest state goes out, nothing is lost
    assert len(updates_of(bot, ts)) == 2
    assert "stage 2/6 · validate" in updates_of(bot, ts)[-1]["text"]


def test_a_failed_run_names_the_step_and_error_in_the_thread(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    run_id, ts = start_run(bot)
    launcher.move(run_id, state="failed", failed_step="validate", steps_done=1,
                  error="3 files are corrupt: a.png, b.png, c.png", finished_at=time.time())  # fmt: skip
    watcher = bot.watcher()
    watcher.tick()
    watcher.tick()
    [reply] = [m for m in bot.slack.messages(CHANNEL) if m["thread_ts"] == ts]
    assert "failed at *validate*" in reply["text"]
    assert "a.png, b.png, c.png" in str(reply["blocks"])
    assert "Failed at *validate*" in str(updates_of(bot, ts)[-1]["blocks"])
    assert bot.services.runbook.get(run_id).settled  # type: ignore[union-attr]


def test_a_gated_run_says_why(bot: Bot, launcher: ScriptedLauncher) -> None:
    run_id, ts = start_run(bot)
    result = finished()["result"]
    gated = result.__class__(**{**result.__dict__, "gate_passed": False,
                                "gate_reason": "deploy score 0.41 < champion 0.64"})  # fmt: skip
    launcher.move(run_id, state="gated", steps_done=6, result=gated, finished_at=time.time())
    bot.watcher().tick()
    [reply] = [m for m in bot.slack.messages(CHANNEL) if m["thread_ts"] == ts]
    assert "deploy score 0.41 &lt; champion 0.64" in reply["text"]  # escaped for mrkdwn
    assert "Rejected by the gate" in str(updates_of(bot, ts)[-1]["blocks"])


def test_the_results_card_has_metrics_images_and_opaque_buttons(
    bot: Bot, launcher: ScriptedLauncher, tmp_path: Path, bot_mlflow: str
) -> None:
    run_id, _ = start_run(bot)
    grid = png(tmp_path / "grid.png", (200, 10, 10))
    curve = png(tmp_path / "curve.png", (10, 10, 200))
    # the pictures live in the MLflow artifact store, on the version's run
    version, mlflow_run = register_challenger(
        bot_mlflow,
        tmp_path / "mlflow",
        "cut",
        {"sample_grid.png": grid.read_bytes(), "loss_curve.png": curve.read_bytes()},
    )
    tags = {"sample_grid": f"runs:/{mlflow_run}/sample_grid.png", "loss_curve": "loss_curve.png"}
    launcher.move(run_id, **finished(version, tags))
    bot.watcher().tick()

    cards = [m for m in bot.slack.messages(CHANNEL) if "ready for review" in m["text"]]
    [card] = cards
    shown = str(card["blocks"])
    assert "deploy score (higher is better)" in shown
    assert "0.71 · champion 0.64 (+0.07, better)" in shown
    assert "Gate passed" in shown
    assert "champion v2" in shown
    assert "digest `abc123`" in shown
    assert "ganops-trainer:test" in shown
    # every metric, internals and four decimals, in the card's thread
    [table] = [m for m in bot.slack.messages(CHANNEL) if m["text"].startswith("Every metric")]
    assert table["thread_ts"] == card["ts"]
    assert "deploy score" in table["text"]
    assert "+0.0700" in table["text"]
    approve, reject = buttons(card)
    assert (approve["action_id"], reject["action_id"]) == ("approve", "reject")
    approval_id = approve["value"]
    assert reject["value"] == approval_id
    assert run_id not in approval_id
    assert "cut" not in approval_id
    assert len(approval_id) >= 16
    approval = bot.services.approvals.get(approval_id)  # type: ignore[union-attr]
    assert approval is not None
    assert approval.version == version
    assert approval.message_ts == card["ts"]

    # files_upload_v2 went through all three steps, and the pictures sit in the card's thread
    assert len(bot.slack.calls("files.getUploadURLExternal")) == 2
    [complete] = bot.slack.calls("files.completeUploadExternal")
    assert complete.args["thread_ts"] == card["ts"]
    [with_files] = [m for m in bot.slack.messages(CHANNEL) if m["files"]]
    assert with_files["thread_ts"] == card["ts"]
    sent = {f["name"]: bot.slack.file_bytes(f["id"]) for f in with_files["files"]}
    assert sent == {"sample_grid.png": grid.read_bytes(), "loss_curve.png": curve.read_bytes()}


def test_approve_on_the_card_deploys_through_the_approvals_listener(
    tmp_path: Path, launcher: ScriptedLauncher
) -> None:
    registry = MemoryRegistry()
    registry.add("cut", "2", "3")
    bot = start_bot(tmp_path / "b", launcher, lambda s: make_services(s, launcher, registry))
    try:
        approve_on_card(bot, launcher, registry)
    finally:
        bot.stop()


def approve_on_card(bot: Bot, launcher: ScriptedLauncher, registry: MemoryRegistry) -> None:
    run_id, _ = start_run(bot)
    launcher.move(run_id, **finished("3"))
    bot.watcher().tick()
    [card] = [m for m in bot.slack.messages(CHANNEL) if "ready for review" in m["text"]]
    approval_id = buttons(card)[0]["value"]
    assert bot.click("approve", approval_id, CAROL, card["ts"]).status_code == 200
    deployer = bot.services.deployer
    eventually(lambda: deployer.calls)  # type: ignore[union-attr]
    assert deployer.calls == [("cut", "3", "models:/ganops-cut/3")]  # type: ignore[union-attr]
    eventually(lambda: registry.aliases.get(("cut", "champion")) == "3")
    updated = eventually(
        lambda: [u for u in updates_of(bot, card["ts"]) if "Approved" in u["text"]]
    )
    assert not buttons(updated[-1])  # the buttons are gone once decided


def test_watching_resumes_after_a_restart_and_posts_the_card_once(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    run_id, ts = start_run(bot)
    # a new bot process on the same state dir: new services, new watcher, same store
    restarted = make_services(bot.settings, launcher)
    from ganops.bot.runs.watch import RunWatcher

    watcher = RunWatcher(restarted, bot.settings.state_dir / "files", ChannelLimiter(0.0))
    launcher.move(run_id, state="running", current_step="train", steps_done=2)
    watcher.tick()
    assert "stage 3/6 · train" in updates_of(bot, ts)[-1]["text"]  # the same message, resumed
    launcher.move(run_id, **finished("4"))
    watcher.tick()
    again = RunWatcher(make_services(bot.settings, launcher), bot.settings.state_dir / "f")
    again.tick()
    again.tick()
    assert len([m for m in bot.slack.messages(CHANNEL) if "ready for review" in m["text"]]) == 1


def test_a_crash_between_posting_and_recording_the_card_does_not_post_it_twice(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    run_id, _ = start_run(bot)
    launcher.move(run_id, **finished("5"))
    key = f"{run_id}:card"
    # the dead process claimed the card and posted it, but never recorded the ts
    bot.services.runbook._claim(key, CHANNEL, None)
    posted = bot.services.slack.chat_postMessage(
        channel=CHANNEL,
        text="Challenger cut v5 is ready for review",
        metadata={"event_type": POST_EVENT, "event_payload": {"key": key}},
    )
    bot.watcher().tick()
    cards = [m for m in bot.slack.messages(CHANNEL) if "ready for review" in m["text"]]
    assert [c["ts"] for c in cards] == [posted["ts"]]
    assert bot.services.runbook.posted(key) == posted["ts"]
    assert bot.slack.calls("conversations.history")


def test_an_unreachable_status_is_said_once_in_the_thread(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    _, ts = start_run(bot)
    launcher.down = True
    watcher = bot.watcher()
    for _ in range(8):
        watcher.tick()
    [notice] = [m for m in bot.slack.messages(CHANNEL) if m["thread_ts"] == ts]
    assert "cannot read this run's status" in notice["text"]


def test_the_scheduler_runs_the_watcher(bot: Bot, launcher: ScriptedLauncher) -> None:
    run_id, ts = start_run(bot)
    settings = bot.settings.__class__(**{**bot.settings.__dict__, "poll_interval_s": 0.2})
    jobs = build_jobs(settings, bot.services)
    assert jobs.names() == ["approvals", "run-watch"]  # no metrics source: no drift watcher
    bot.services.metrics = PrometheusMetrics("http://127.0.0.1:9")
    assert build_jobs(settings, bot.services).names() == ["approvals", "drift-watch", "run-watch"]
    jobs.start()
    try:
        launcher.move(run_id, state="running", current_step="evaluate", steps_done=3)
        eventually(lambda: any("stage 4/6 · evaluate" in u["text"] for u in updates_of(bot, ts)))
    finally:
        jobs.shutdown()


def test_auto_deploy_rolls_out_once_through_the_approvals_path(
    tmp_path: Path, launcher: ScriptedLauncher
) -> None:
    registry = MemoryRegistry()
    registry.add("cut", "2", "3")
    registry.aliases[("cut", "champion")] = "2"
    bot = start_bot(
        tmp_path / "b",
        launcher,
        lambda s: make_services(s, launcher, registry),
        GANOPS_APPROVERS=f"{ALICE},{CAROL}",  # auto_deploy is an approver's vote
    )
    try:
        run_id, _ = start_run(bot, "epochs=2 auto_deploy=true")
        launcher.move(run_id, **{**finished("3"), "state": "deployed"})
        watcher = bot.watcher()
        watcher.tick()
        watcher.tick()  # a second look (or a restart) must not deploy again
        deployer = bot.services.deployer
        assert deployer.calls == [("cut", "3", "models:/ganops-cut/3")]  # type: ignore[union-attr]
        assert registry.aliases[("cut", "champion")] == "3"
        assert registry.aliases[("cut", "previous_champion")] == "2"
        audit = [(r.actor, r.action, r.outcome, r.path) for r in bot.services.store.list_audit(50)]
        assert (ALICE, "decide", "approved", "policy") in audit  # the requester's own vote
        assert [a for a in audit if a[:2] == ("ganops", "deploy")] == [
            ("ganops", "deploy", "ok", None)
        ]
        [card] = [m for m in bot.slack.messages(CHANNEL) if "ready for review" in str(m["blocks"])]
        assert not buttons(card)  # decided: no buttons left to click
        assert f"Approved by <@{ALICE}>" in card["text"]
    finally:
        bot.stop()
