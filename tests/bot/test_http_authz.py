"""Authorization on every path, through the real Bolt app over signed HTTP with the local
Slack: auto_deploy, the two-person rule under concurrency, approver-only actions, bounds and
the run timeout. The launcher is scripted and the deployer counts its calls, so "nothing
launched" and "exactly one deploy" are counted, not assumed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ganops.bot.drift.watch import AlarmBook
from ganops.bot.ports import DriftAlert
from ganops.bot.runs.watch import ChannelLimiter, RunWatcher
from tests.fakes.approvals import MemoryRegistry, RecordingDeployer
from tests.fakes.launcher import ScriptedLauncher, finished
from tests.fakes.slack import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    Bot,
    buttons,
    eventually,
    make_services,
    start_bot,
)

MALLORY = "U_MALLORY"  # a channel member, not an approver


class Stack:
    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.launcher = ScriptedLauncher()
        self.registry = MemoryRegistry()
        self.registry.add("cut", "1", "2", "3")
        self.registry.aliases[("cut", "champion")] = "2"
        self.registry.aliases[("cut", "previous_champion")] = "1"
        self.deployer = RecordingDeployer()
        self.bot: Bot = start_bot(
            tmp_path,
            self.launcher,
            lambda s: make_services(s, self.launcher, self.registry, self.deployer),
            **({"GANOPS_APPROVERS": f"{BOB},{CAROL}"} | env),
        )

    def idle(self) -> None:
        """Every lazy listener started so far has finished (their count is kept on submit)."""
        eventually(lambda: self.bot.executor.busy == 0)

    def retrain(self, text: str, user: str = ALICE) -> str:
        """A /retrain that is accepted; returns the run id once its message is posted."""
        known = {r.run_id for r in self.bot.services.runbook.recent(50)}
        resp = self.bot.slash("/retrain", text, user=user, trigger_id=f"t-{text}-{user}")
        assert (resp.status_code, resp.text) == (200, "")
        row = eventually(
            lambda: next(
                (
                    r
                    for r in self.bot.services.runbook.recent(50)
                    if r.run_id not in known and r.message_ts
                ),
                None,
            )
        )
        return str(row.run_id)

    def to_card(self, run_id: str, state: str = "awaiting_approval") -> tuple[str, str]:
        """End the run in `state`; the watcher posts its card. Returns (approval id, card ts)."""
        self.launcher.move(run_id, **{**finished("3"), "state": state})
        self.bot.watcher().tick()
        row = self.bot.services.runbook.get(run_id)
        assert row is not None
        assert row.approval_id is not None
        [card] = [
            m for m in self.bot.slack.messages(CHANNEL) if "ready for review" in str(m["blocks"])
        ]
        return row.approval_id, card["ts"]

    def approval(self, approval_id: str) -> tuple[str, tuple[str, ...]]:
        a = self.bot.services.approvals.get(approval_id)  # type: ignore[union-attr]
        assert a is not None
        return a.state, a.approvers

    def audit(self, actor: str) -> list[tuple[str, str, str | None]]:
        rows = self.bot.services.store.list_audit(200)
        return [(r.action, r.outcome, r.path) for r in rows if r.actor == actor]

    def ephemeral(self, user: str, count: int = 1) -> str:
        found = self.bot.slack.wait_for(lambda s: len(s.ephemerals(user)) >= count)
        assert found
        found = self.bot.slack.ephemerals(user)[count - 1]
        return f"{found['text']} {found.get('blocks')}"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path, GANOPS_DATA_ALLOW="s3://team-bucket/")
    yield s
    s.bot.stop()


@pytest.fixture
def two(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path, GANOPS_APPROVALS_REQUIRED="2")
    yield s
    s.bot.stop()


def test_a_non_approvers_auto_deploy_is_refused_in_the_ack(stack: Stack) -> None:
    resp = stack.bot.slash("/retrain", "epochs=2 auto_deploy=true", user=MALLORY)
    body = resp.json()
    assert body["response_type"] == "ephemeral"
    assert "`auto_deploy=true` is for approvers only" in body["text"]
    stack.idle()
    assert stack.launcher.launches == 0
    assert stack.deployer.calls == []
    assert stack.bot.slack.messages() == []
    assert stack.audit(MALLORY) == [("auto_deploy", "refused", "slash")]


def test_an_approvers_auto_deploy_is_one_vote_of_two(two: Stack) -> None:
    run_id = two.retrain("epochs=2 auto_deploy=true", user=CAROL)
    approval_id, card_ts = two.to_card(run_id, state="deployed")
    two.bot.watcher().tick()  # a later look does not vote again
    assert two.approval(approval_id) == ("pending", (CAROL,))
    assert two.deployer.calls == []
    [card] = [m for m in two.bot.slack.messages(CHANNEL) if m["ts"] == card_ts]
    assert [b["action_id"] for b in buttons(card)] == ["approve", "reject"]
    assert ("decide", "recorded", "policy") in two.audit(CAROL)
    two.bot.click("approve", approval_id, CAROL, card_ts)  # her click is the same vote
    assert "already recorded" in two.ephemeral(CAROL)
    assert two.deployer.calls == []
    two.bot.click("approve", approval_id, BOB, card_ts)
    eventually(lambda: two.deployer.calls)
    two.idle()
    assert two.deployer.calls == [("cut", "3", "models:/ganops-cut/3")]
    assert two.approval(approval_id) == ("approved", (CAROL, BOB))


def test_one_approver_cannot_fill_the_two_person_rule(two: Stack) -> None:
    approval_id, card_ts = two.to_card(two.retrain("epochs=2"))
    actions = [lambda: two.bot.click("approve", approval_id, BOB, card_ts) for _ in range(3)]
    actions.append(
        lambda: two.bot.slash("/ganops", f"approve {approval_id}", user=BOB, trigger_id="t-a")
    )
    threads = [threading.Thread(target=a) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    two.idle()
    assert two.approval(approval_id) == ("pending", (BOB,))
    assert two.deployer.calls == []
    decided = [(o, p) for a, o, p in two.audit(BOB) if a == "decide"]
    assert sorted(o for o, _ in decided) == ["duplicate", "duplicate", "duplicate", "recorded"]
    assert sorted({p for _, p in decided}, key=str) == ["button", "slash"]
    two.bot.click("approve", approval_id, CAROL, card_ts)
    eventually(lambda: two.deployer.calls)
    two.idle()
    assert len(two.deployer.calls) == 1
    assert two.approval(approval_id) == ("approved", (BOB, CAROL))


def test_non_approvers_cannot_roll_back_snooze_ignore_retrain_alarms_or_cancel(
    stack: Stack,
) -> None:
    approval_id, card_ts = stack.to_card(stack.retrain("epochs=2"))
    client = stack.bot.services.slack
    # rollback
    stack.bot.slash("/ganops", "rollback", user=MALLORY, trigger_id="t-rb")
    assert "Only approvers may roll back" in stack.ephemeral(MALLORY, 1)
    # snooze and ignore on a drift alarm
    alarms = AlarmBook(stack.bot.services.store)
    episode = alarms.open(DriftAlert("cut", "2", 2.0, {"brightness": 3.0}), CHANNEL)
    alarm_ts = str(client.chat_postMessage(channel=CHANNEL, text="drift alarm")["ts"])
    stack.bot.click("alarm_snooze", episode.episode_id, MALLORY, alarm_ts)
    assert "Only approvers may snooze" in stack.ephemeral(MALLORY, 2)
    stack.bot.click("alarm_ignore", episode.episode_id, MALLORY, alarm_ts)
    assert "Only approvers may ignore" in stack.ephemeral(MALLORY, 3)
    stack.bot.click("alarm_retrain", episode.episode_id, MALLORY, alarm_ts)
    assert "Only approvers may retrain from a drift alarm" in stack.ephemeral(MALLORY, 4)
    stack.idle()
    assert stack.launcher.launches == 1  # only the first /retrain
    # cancel someone else's run, by command and by its button
    run_id = stack.retrain("model=cyclegan epochs=2")
    stack.bot.slash("/ganops", f"cancel {run_id}", user=MALLORY, trigger_id="t-c")
    assert "requester or an approver" in stack.ephemeral(MALLORY, 5)
    run_ts = stack.bot.services.runbook.get(run_id).message_ts  # type: ignore[union-attr]
    stack.bot.click("run_cancel", run_id, MALLORY, run_ts)
    assert "requester or an approver" in stack.ephemeral(MALLORY, 6)
    stack.idle()
    assert stack.audit(MALLORY) == [
        ("cancel", "refused", "button"),
        ("cancel", "refused", "slash"),
        ("alarm_retrain", "refused", "button"),
        ("ignore", "refused", "button"),
        ("snooze", "refused", "button"),
        ("rollback", "refused", "slash"),
    ]
    assert not stack.launcher.status(run_id).final
    assert alarms.get(episode.episode_id).state == "firing"  # type: ignore[union-attr]
    assert stack.bot.services.approvals.pending()[0].approval_id == approval_id  # type: ignore[union-attr]
    # the pending approval still works
    stack.bot.click("approve", approval_id, CAROL, card_ts)
    eventually(lambda: stack.deployer.calls)
    assert stack.deployer.calls == [("cut", "3", "models:/ganops-cut/3")]
    # and the requester may cancel their own run
    stack.bot.click("run_cancel", run_id, ALICE, run_ts)
    eventually(lambda: stack.launcher.status(run_id).state == "cancelled")
    stack.idle()  # the audit row follows the cancel in the same listener
    assert ("cancel", "cancelled", "button") in stack.audit(ALICE)


def test_a_rollback_by_an_approver_supersedes_nothing(stack: Stack) -> None:
    approval_id, _ = stack.to_card(stack.retrain("epochs=2"))
    stack.bot.slash("/ganops", "rollback", user=CAROL, trigger_id="t-rb")
    assert "an approver decides" in str(stack.bot.slack.wait_for(lambda s: s.ephemerals(CAROL)))
    pending = stack.bot.services.approvals.pending()  # type: ignore[union-attr]
    assert sorted(a.kind for a in pending) == ["deploy", "rollback"]
    assert stack.approval(approval_id) == ("pending", ())


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("gpus=4", "gpus=4 is over GANOPS_MAX_GPUS=1"),
        ("steps=50000", "steps=50000 is over GANOPS_MAX_STEPS=20000"),
        ("data=s3://other-bucket/photos", "outside GANOPS_DATA_ALLOW"),
        ("data=http://169.254.169.254/", "169.254.169.254 is a link-local address"),
    ],
)
def test_past_a_bound_a_member_is_refused_and_an_approver_is_not(
    stack: Stack, text: str, named: str
) -> None:
    body = stack.bot.slash("/retrain", text, user=MALLORY).json()
    assert body["response_type"] == "ephemeral"
    assert named in body["text"]
    stack.idle()
    assert stack.launcher.launches == 0
    assert stack.audit(MALLORY) == [("retrain", "refused", "slash")]
    stack.retrain(text, user=CAROL)
    assert stack.launcher.launches == 1


def test_within_the_bounds_anyone_may_retrain(stack: Stack) -> None:
    stack.retrain("gpus=1 steps=20000 data=s3://team-bucket/photos", user=MALLORY)
    assert ("retrain", "started", "slash") in stack.audit(MALLORY)


def test_a_run_past_its_timeout_is_cancelled_and_the_channel_told(stack: Stack) -> None:
    run_id = stack.retrain("epochs=2")
    stack.launcher.move(run_id, state="running", current_step="train", steps_done=2)
    now = [time.time()]
    watcher = RunWatcher(
        stack.bot.services,
        stack.bot.settings.state_dir / "slack-files",
        limiter=ChannelLimiter(0.0),
        clock=lambda: now[0],
        run_timeout_s=3600,
    )
    watcher.tick()
    assert stack.launcher.status(run_id).state == "running"  # not yet
    now[0] += 3601
    watcher.tick()
    watcher.tick()
    assert stack.launcher.status(run_id).state == "cancelled"
    row = stack.bot.services.runbook.get(run_id)
    assert row is not None
    assert row.settled
    replies = [m for m in stack.bot.slack.messages(CHANNEL) if m["thread_ts"] == row.message_ts]
    assert [m["text"] for m in replies] == [
        f":alarm_clock: Run `{run_id}` ran past GANOPS_RUN_TIMEOUT (1h 00m): cancelled."
    ]
    [message] = [m for m in stack.bot.slack.messages(CHANNEL) if m["ts"] == row.message_ts]
    assert "Cancelled." in str(message["blocks"])
    assert not buttons(message)  # no Cancel button on a run that has ended
    assert ("cancel", "timeout", "job") in stack.audit("ganops")


def test_cancel_without_an_id_cancels_the_callers_latest_run(stack: Stack) -> None:
    run_id = stack.retrain("epochs=2")
    [message] = [m for m in stack.bot.slack.messages(CHANNEL) if not m["thread_ts"]]
    [cancel] = buttons(message)
    assert (cancel["action_id"], cancel["value"]) == ("run_cancel", run_id)
    assert cancel["confirm"]["confirm"]["text"] == "Cancel the run"
    stack.bot.slash("/ganops", "cancel", user=ALICE, trigger_id="t-c")
    assert f"Cancelling run `{run_id}`" in str(stack.bot.slack.wait_for(lambda s: s.ephemerals()))
    assert stack.launcher.status(run_id).state == "cancelled"
    assert ("cancel", "cancelled", "slash") in stack.audit(ALICE)


def test_the_launch_follows_the_acks_verdict_even_if_the_lookup_flaps(stack: Stack) -> None:
    """An approver lookup that fails in the ack and works a moment later (a user-group call)
    must not launch what the user was told is refused."""
    answers = iter([False])
    book = stack.bot.services.approvals
    assert book is not None
    book.is_approver = lambda user: next(answers, True)  # type: ignore[method-assign]
    body = stack.bot.slash("/retrain", "gpus=4", user=CAROL).json()
    assert "GANOPS_MAX_GPUS" in body["text"]
    stack.idle()
    assert stack.launcher.launches == 0
