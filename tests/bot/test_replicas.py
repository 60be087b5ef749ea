"""Two bot replicas on one PostgreSQL; the same promises from one process on SQLite.

Real `ganops bot --http` processes (`tests.fakes.bot_process`: `bot.__main__.serve`, the
outbox worker, leadership, the jobs), the local Slack, a pipeline backend the processes share
(`FileLauncher`), and a real PostgreSQL (tests/fakes/postgres.py). Every replica acks; each
command is carried out once; scheduled jobs run on the leader only.

- `/retrain` at one replica: one run, one run message, one results card;
- 6 approve clicks at once, spread over the replicas: one deploy, one champion move;
- a replica SIGKILLed right after it acked (its worker had claimed the row): the other one
  starts the run once the claim's lease runs out;
- the leader SIGKILLed while a run is watched: the other one takes over the watch, and the
  run still ends with its card.

On SQLite there is one process; "the other replica" is the same bot started again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from slack_sdk import WebClient

from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.local.slack import LocalSlack
from ganops.bot.ports import Approval
from ganops.bot.store import Store
from ganops.pipeline.deploy.local import STARTING, LocalDeployer
from tests.bot.approvals.test_http import click_payload
from tests.bot.approvals.test_jobs import posted
from tests.fakes.approvals import FileRegistry
from tests.fakes.bot_process import stub_cmd
from tests.fakes.launcher import FileLauncher, finished
from tests.fakes.prometheus import REPO, free_port, terminate
from tests.fakes.slack import ALICE, BOB, CAROL, SECRET, TOKEN, eventually, sign

pytestmark = pytest.mark.slow  # real bot processes and a real PostgreSQL

CHANNEL = "C_OPS"
LEASE_S = 2.0  # an outbox claim without heartbeat expires this fast here (default 30 s)


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    state: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def post(self, body: str) -> requests.Response:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} | sign(body)
        return requests.post(self.url, data=body, headers=headers, timeout=10)

    def retrain(self, text: str, trigger_id: str, user: str = ALICE) -> requests.Response:
        return self.post(urlencode(slash_form(text, user, trigger_id)))

    def click(self, user: str, a: Approval, message: dict[str, Any]) -> int:
        return self.post(click_payload(user, "approve", a, message)).status_code

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def said(self, text: str) -> bool:
        return text in self.log.read_text(errors="replace")


def slash_form(text: str, user: str, trigger_id: str) -> dict[str, str]:
    return {
        "team_id": "T1",
        "channel_id": CHANNEL,
        "user_id": user,
        "command": "/retrain",
        "text": text,
        "response_url": "http://127.0.0.1:9/never",  # nothing here answers through it
        "trigger_id": trigger_id,
    }


@dataclass
class Cluster:
    tmp: Path
    backend: str
    database_url: str | None
    slack: LocalSlack
    registry: FileRegistry
    launcher: FileLauncher
    book: ApprovalBook  # the test's own view of the shared approvals
    gates: Path
    replicas: list[Replica] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Replicas at once: two on PostgreSQL, one (a single process) on SQLite."""
        return 2 if self.database_url else 1

    def start(self, **env: str) -> Replica:
        index = len(self.replicas)
        # Each replica its own state dir on PostgreSQL: nothing may rely on a shared disk.
        state = self.tmp / (f"state-{index}" if self.database_url else "state")
        port = free_port()
        log = self.tmp / f"bot-{index}.log"
        full = os.environ | {
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": self.slack.url,
            "GANOPS_CHANNEL": CHANNEL,
            "GANOPS_APPROVERS": f"{CAROL},{BOB}",
            "GANOPS_STATE_DIR": str(state),
            "GANOPS_POLL_INTERVAL": "0.5",
            "GANOPS_OUTBOX_LEASE": str(LEASE_S),
            "FAKE_REGISTRY": str(self.registry.path),
            "FAKE_GATES": str(self.gates),
            "FAKE_LAUNCHER": str(self.launcher.path),
            "FAKE_ALERTS": str(self.tmp / "alerts.json"),
            "GANOPS_DRIFT_INTERVAL": "0.5",
            "BOT_PORT": str(port),
        }
        if self.database_url:
            full["GANOPS_DATABASE_URL"] = self.database_url
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.fakes.bot_process"],
                cwd=REPO,
                env=full | env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        replica = Replica(process, port, log, state)
        self.replicas.append(replica)
        eventually(lambda: _healthy(replica), timeout=60)
        return replica

    def top_level(self) -> list[dict[str, Any]]:
        return [m for m in self.slack.messages(CHANNEL) if not m.get("thread_ts")]

    def run_messages(self) -> list[dict[str, Any]]:
        """The run's own message (the results card names the run too: not counted here)."""
        return [m for m in self.top_level() if "run-1" in str(m.get("blocks")) and not _is_card(m)]

    def cards(self) -> list[dict[str, Any]]:
        return [m for m in self.slack.messages(CHANNEL) if _is_card(m)]


def _is_card(message: dict[str, Any]) -> bool:
    return "'action_id': 'approve'" in str(message.get("blocks"))


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _healthy(replica: Replica) -> bool:
    assert replica.process.poll() is None, replica.log.read_text()
    try:
        return requests.get(replica.url.replace("/slack/events", "/healthz"), timeout=2).ok
    except requests.RequestException:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    url = request.getfixturevalue("database_url") if request.param == "postgresql" else None
    slack = LocalSlack(token=TOKEN).start()
    gates = tmp_path / "gates"
    gates.mkdir()
    registry = FileRegistry(path=tmp_path / "registry.json")
    registry.add("cut", "1", "2", "3")
    registry.set_alias("cut", "champion", "1")
    launcher = FileLauncher(tmp_path / "launcher.json")
    deployer = LocalDeployer(tmp_path / "test-state", server_cmd=stub_cmd(gates))
    store = Store(tmp_path / ("test-state" if url else "state"), url)
    book = ApprovalBook(store, registry, deployer, approvers=frozenset({CAROL, BOB}))
    c = Cluster(tmp_path, request.param, url, slack, registry, launcher, book, gates)
    yield c
    for hold in gates.iterdir():
        hold.unlink()
    for replica in c.replicas:
        if replica.process.poll() is None:
            terminate(replica.process, timeout=15)
        deployer = LocalDeployer(replica.state, server_cmd=stub_cmd(gates))
        deployer.stop()
        orphan = (_json(deployer.dir / STARTING) or {}).get("pid")
        if isinstance(orphan, int):  # the server of a rollout whose replica was killed
            with contextlib.suppress(ProcessLookupError):
                os.killpg(orphan, signal.SIGKILL)
    store.close()
    slack.stop()


def test_retrain_at_one_replica_is_announced_once_with_one_card(cluster: Cluster) -> None:
    replicas = [cluster.start() for _ in range(cluster.size)]
    resp = replicas[0].retrain("model=cut epochs=2", trigger_id="t-1")
    assert (resp.status_code, resp.text) == (200, "")
    eventually(cluster.run_messages, timeout=20)
    cluster.launcher.move("run-1", **finished("3"))
    eventually(cluster.cards, timeout=30)
    time.sleep(2.0)  # every replica's jobs have ticked several times since
    assert cluster.launcher.count() == 1
    assert len(cluster.run_messages()) == 1
    assert len(cluster.cards()) == 1


def test_six_clicks_over_both_replicas_deploy_once(cluster: Cluster) -> None:
    replicas = [cluster.start() for _ in range(cluster.size)]
    a = posted(cluster.book, WebClient(token=TOKEN, base_url=cluster.slack.url), "2")
    message = next(m for m in cluster.slack.messages(CHANNEL) if m["ts"] == a.message_ts)
    users = [CAROL, BOB] * 3
    codes: list[int] = []
    clicks = [
        threading.Thread(
            target=lambda i=i: codes.append(replicas[i % len(replicas)].click(users[i], a, message))
        )
        for i in range(6)
    ]
    for t in clicks:
        t.start()
    for t in clicks:
        t.join()
    assert codes == [200] * 6
    result = eventually(lambda: cluster.book.deploy_result(a.approval_id), timeout=60)
    assert result.ok
    time.sleep(1.5)  # any second deploy would have started by now
    champion = cluster.registry.get_alias("cut", "champion")
    previous = cluster.registry.get_alias("cut", "previous_champion")
    assert (champion and champion.version, previous and previous.version) == ("2", "1")
    served = [
        LocalDeployer(r.state, server_cmd=stub_cmd(cluster.gates)).current("cut") for r in replicas
    ]
    assert served.count("2") == 1  # one replica deployed, once
    deploys = [r for r in cluster.book.store.list_audit(100) if r.action == "deploy"]
    assert len(deploys) == 1, deploys
    decided = cluster.book.get(a.approval_id)
    assert decided is not None
    assert decided.state == "approved"


def test_a_replica_killed_right_after_its_ack_loses_nothing(cluster: Cluster) -> None:
    doomed = cluster.start(FAKE_OUTBOX_STALL="1")  # claims the row, then never carries it out
    resp = doomed.retrain("model=cut epochs=2", trigger_id="t-kill")
    assert (resp.status_code, resp.text) == (200, "")
    eventually(lambda: doomed.said("outbox: stalled on"), timeout=10)
    doomed.kill()
    assert cluster.launcher.count() == 0
    assert cluster.run_messages() == []
    cluster.start()  # the other replica (on SQLite: the bot started again)
    eventually(cluster.run_messages, timeout=LEASE_S + 20)
    time.sleep(1.0)
    assert cluster.launcher.count() == 1
    assert len(cluster.run_messages()) == 1


def test_the_leader_killed_mid_watch_is_replaced_and_the_run_ends_with_its_card(
    cluster: Cluster,
) -> None:
    leader = cluster.start()
    eventually(lambda: leader.said("now leads") or not cluster.database_url, timeout=10)
    others = [cluster.start() for _ in range(cluster.size - 1)]
    entry = others[0] if others else leader
    assert entry.retrain("model=cut epochs=2", trigger_id="t-watch").status_code == 200
    eventually(cluster.run_messages, timeout=20)
    cluster.launcher.move("run-1", state="running", current_step="train", steps_done=2)
    eventually(lambda: "train" in str(cluster.run_messages()[0].get("blocks")), timeout=20)
    leader.kill()
    if not others:
        cluster.start()  # SQLite: the one process comes back
    cluster.launcher.move("run-1", **finished("3"))
    eventually(cluster.cards, timeout=30)
    if others:
        assert others[0].said("now leads")  # the card came from the replica that took over
    time.sleep(1.5)
    assert len(cluster.cards()) == 1
    assert len(cluster.run_messages()) == 1
    row = eventually(lambda: (r := cluster.book.store) and _run_settled(r), timeout=20)
    assert row


def _run_settled(store: Store) -> bool:
    with store.connect() as conn:
        r = conn.execute("SELECT settled FROM runs WHERE run_id=?", ("run-1",)).fetchone()
    return bool(r and r["settled"])


def test_an_auto_deploy_is_handed_from_the_watcher_to_a_worker(cluster: Cluster) -> None:
    replicas = [cluster.start() for _ in range(cluster.size)]
    text = "model=cut epochs=2 auto_deploy=true"
    assert replicas[-1].retrain(text, trigger_id="t-auto", user=CAROL).status_code == 200
    eventually(cluster.run_messages, timeout=20)
    cluster.launcher.move("run-1", **{**finished("3"), "state": "deployed"})
    eventually(
        lambda: (c := cluster.registry.get_alias("cut", "champion")) and c.version == "3",
        timeout=60,
    )
    time.sleep(1.0)
    deploys = [r for r in cluster.book.store.list_audit(100) if r.action == "deploy"]
    assert len(deploys) == 1, deploys
    # The rollout ran as an outbox row (claimed by a worker), not inside the run watch job.
    with cluster.book.store.connect() as conn:
        row = conn.execute(
            "SELECT state, attempts FROM outbox WHERE kind='job:auto_deploy'"
        ).fetchone()
    assert (row["state"], row["attempts"]) == ("done", 1)


def test_a_drift_alarm_is_posted_once(cluster: Cluster) -> None:
    replicas = [cluster.start() for _ in range(cluster.size)]
    alert = {"model": "cut", "version": "1", "score": 2.5, "features": {"brightness": 3.0}}
    (cluster.tmp / "alerts.json").write_text(json.dumps([alert]))

    def alarms() -> list[dict[str, Any]]:
        return [m for m in cluster.top_level() if "alarm_snooze" in str(m.get("blocks"))]

    eventually(alarms, timeout=30)  # the drift watch's first tick is 5 s after start
    time.sleep(3.0)  # both replicas' drift watch ticks every 0.5 s; only the leader's acts
    assert len(alarms()) == 1
    assert all(r.process.poll() is None for r in replicas)


def test_a_replica_killed_mid_rollout_is_reconciled_once_by_the_other(cluster: Cluster) -> None:
    replicas = [cluster.start() for _ in range(cluster.size)]

    def reconciled() -> list[Any]:
        return [r for r in cluster.book.store.list_audit(50) if r.action == "reconcile"]

    # The leader's start-up pass has run (one row per model): what follows is the orphan path.
    eventually(lambda: len(reconciled()) >= 3, timeout=30)
    (cluster.gates / "hold-2").touch()  # v2 "loads" until released: the rollout waits
    a = posted(cluster.book, WebClient(token=TOKEN, base_url=cluster.slack.url), "2")
    message = next(m for m in cluster.slack.messages(CHANNEL) if m["ts"] == a.message_ts)
    assert replicas[-1].click(CAROL, a, message) == 200

    def rolling() -> Replica | None:
        for r in replicas:
            if (LocalDeployer(r.state, server_cmd=stub_cmd(cluster.gates)).dir / STARTING).exists():
                return r
        return None

    deployer = eventually(rolling, timeout=30)
    deployer.kill()  # mid-rollout: approved, no result, the model's lock gone with it
    assert cluster.book.deploy_result(a.approval_id) is None
    (cluster.gates / "hold-2").unlink()
    if len(replicas) == 1:
        cluster.start()  # SQLite: the one process comes back and reconciles at start-up
    result = eventually(lambda: cluster.book.deploy_result(a.approval_id), timeout=120)
    assert result.ok
    champion = cluster.registry.get_alias("cut", "champion")
    assert champion is not None
    assert champion.version == "2"
    time.sleep(1.0)
    audit = cluster.book.store.list_audit(200)
    assert len([r for r in audit if r.action == "deploy"]) == 1
    finishes = [r for r in audit if r.action == "reconcile" and r.detail.get("action") == "finish"]
    assert len(finishes) == 1, "\n".join(str((r.action, r.object, r.detail)) for r in audit)
