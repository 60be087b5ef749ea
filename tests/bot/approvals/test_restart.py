"""Rollouts survive the bot: a real bot process (`tests.fakes.bot_process`: `bot.__main__.serve`
over HTTP, the local Slack, the real LocalDeployer with a stub model server whose readiness
the test holds back) is approved into a rollout, then killed or stopped in the middle of it.

- SIGKILL mid-rollout, restart: start-up reconciliation finishes the rollout, the champion
  alias and the served version agree, and the channel and the card's thread are told;
- SIGTERM mid-rollout: the bot waits for the rollout, then exits; past its grace it exits
  without recording it, and leaves it in flight for the next start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from slack_sdk import WebClient

from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.local.slack import LocalSlack
from ganops.bot.ports import Approval
from ganops.bot.store import Store
from ganops.pipeline.deploy.local import STARTING, LocalDeployer
from tests.bot.approvals.test_http import click_payload
from tests.bot.approvals.test_jobs import CHANNEL, posted
from tests.fakes.approvals import FileRegistry
from tests.fakes.bot_process import stub_cmd
from tests.fakes.prometheus import REPO, free_port, terminate
from tests.fakes.slack import CAROL, SECRET, TOKEN, eventually, sign

pytestmark = pytest.mark.slow  # real bot and server processes


@dataclass
class BotProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def click(self, user: str, action: str, a: Approval, message: dict[str, Any]) -> int:
        body = click_payload(user, action, a, message)
        headers = {"Content-Type": "application/x-www-form-urlencoded"} | sign(body)
        return requests.post(f"{self.url}/slack/events", data=body, headers=headers).status_code


@dataclass
class Rig:
    tmp: Path
    slack: LocalSlack
    registry: FileRegistry
    deployer: LocalDeployer  # the test's own view of the same serving state
    book: ApprovalBook
    gates: Path
    started: list[BotProcess]

    def start_bot(self, **env: str) -> BotProcess:
        port = free_port()
        log = self.tmp / f"bot-{len(self.started)}.log"
        full = os.environ | {
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": self.slack.url,
            "GANOPS_CHANNEL": CHANNEL,
            "GANOPS_APPROVERS": CAROL,
            "GANOPS_STATE_DIR": str(self.deployer.dir.parent),
            "FAKE_REGISTRY": str(self.registry.path),
            "FAKE_GATES": str(self.gates),
            "BOT_PORT": str(port),
        }
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.fakes.bot_process"],
                cwd=REPO,
                env=full | env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        bot = BotProcess(process, port, log)
        self.started.append(bot)
        eventually(lambda: _healthy(bot), timeout=60)
        return bot

    def hold(self, version: str) -> None:
        (self.gates / f"hold-{version}").touch()

    def release(self, version: str) -> None:
        (self.gates / f"hold-{version}").unlink()

    def card(self, version: str = "2") -> tuple[Approval, dict[str, Any]]:
        """What the results card does: open the approval, post the card, attach it."""
        a = posted(self.book, WebClient(token=TOKEN, base_url=self.slack.url), version)
        return a, next(m for m in self.slack.messages(CHANNEL) if m["ts"] == a.message_ts)

    def in_flight(self, a: Approval) -> dict[str, Any]:
        """Wait until the bot is rolling `a` out: approved, its server starting, no result."""
        starting = eventually(lambda: _json(self.deployer.dir / STARTING), timeout=60)
        now = self.book.get(a.approval_id)
        assert now is not None
        assert now.state == "approved"
        assert self.book.deploy_result(a.approval_id) is None
        return dict(starting)


def _healthy(bot: BotProcess) -> bool:
    assert bot.process.poll() is None, bot.log.read_text()
    try:
        return requests.get(f"{bot.url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    slack = LocalSlack(token=TOKEN).start()
    state = tmp_path / "state"
    gates = tmp_path / "gates"
    gates.mkdir()
    registry = FileRegistry(path=tmp_path / "registry.json")
    registry.add("cut", "1", "2")
    registry.set_alias("cut", "champion", "1")
    deployer = LocalDeployer(state, server_cmd=stub_cmd(gates), ready_timeout_s=60)
    assert deployer.deploy("cut", "1", "models:/ganops-cut/1").ok  # v1 serves, is champion
    book = ApprovalBook(Store(state), registry, deployer, approvers=frozenset({CAROL}))
    rig = Rig(tmp_path, slack, registry, deployer, book, gates, [])
    yield rig
    for bot in rig.started:
        terminate(bot.process, timeout=15)
    for hold in gates.iterdir():
        hold.unlink()  # a server still starting may now finish, and be stopped below
    deployer.stop()
    orphan = (_json(deployer.dir / STARTING) or {}).get("pid")
    if isinstance(orphan, int) and _alive(orphan):  # a test that failed half-way
        os.killpg(orphan, signal.SIGKILL)
    slack.stop()


def champion(rig: Rig) -> str | None:
    info = rig.registry.get_alias("cut", "champion")
    return info.version if info is not None else None


def test_a_bot_killed_mid_rollout_is_reconciled_when_it_starts_again(rig: Rig) -> None:
    a, message = rig.card("2")
    rig.hold("2")  # v2 "loads" until released: the rollout waits for its /readyz
    bot = rig.start_bot()
    assert bot.click(CAROL, "approve", a, message) == 200
    starting = rig.in_flight(a)
    bot.process.send_signal(signal.SIGKILL)  # no grace: what the kubelet does after it
    bot.process.wait(timeout=10)
    # Half done: approved, never recorded; the alias and the served version still say v1.
    assert rig.book.deploy_result(a.approval_id) is None
    assert (champion(rig), rig.deployer.current("cut")) == ("1", "1")
    assert _alive(starting["pid"])  # the killed rollout's server, still loading

    rig.release("2")
    rig.start_bot()
    eventually(lambda: champion(rig) == "2", timeout=90)
    assert rig.deployer.current("cut") == "2"  # alias and served version agree
    # The aliases move just before the result is written: wait for the record too.
    result = eventually(lambda: rig.book.deploy_result(a.approval_id), timeout=30)
    assert result is not None
    assert result.ok
    assert not _alive(starting["pid"])  # the orphan from the killed rollout was stopped

    def notes() -> list[dict[str, Any]]:
        return [m for m in rig.slack.messages(CHANNEL) if "After a restart" in m.get("text", "")]

    told = eventually(lambda: len(notes()) == 2 and notes())
    assert [m.get("thread_ts") for m in told] == [None, message["ts"]]  # channel and thread
    assert "cut: v2 serves and is champion again" in told[0]["text"]
    blocks = str(told[0]["blocks"])
    assert "was cut short" in blocks
    [row] = [r for r in rig.book.store.list_audit(obj="cut") if r.action == "reconcile"]
    assert (row.outcome, row.detail["action"], row.detail["served"]) == ("ok", "finish", "2")


def test_sigterm_waits_for_the_rollout_in_flight(rig: Rig) -> None:
    a, message = rig.card("2")
    rig.hold("2")
    bot = rig.start_bot()
    assert bot.click(CAROL, "approve", a, message) == 200
    rig.in_flight(a)
    bot.process.send_signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        bot.process.wait(timeout=3)  # still there: the rollout has not finished
    rig.release("2")
    assert bot.process.wait(timeout=60) == 0
    result = rig.book.deploy_result(a.approval_id)
    assert result is not None
    assert result.ok
    assert (champion(rig), rig.deployer.current("cut")) == ("2", "2")
    assert "waiting up to 1260 s for 1 rollout(s) in flight" in bot.log.read_text()


def test_sigterm_past_its_grace_exits_and_leaves_the_rollout_in_flight(rig: Rig) -> None:
    a, message = rig.card("2")
    rig.hold("2")
    bot = rig.start_bot(GANOPS_SHUTDOWN_GRACE="2")
    assert bot.click(CAROL, "approve", a, message) == 200
    rig.in_flight(a)
    bot.process.send_signal(signal.SIGTERM)
    assert bot.process.wait(timeout=30) == 3
    assert "stopping with a rollout still in flight after 2 s" in bot.log.read_text()
    assert rig.book.deploy_result(a.approval_id) is None  # for the next start to reconcile
    assert champion(rig) == "1"
