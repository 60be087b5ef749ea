"""Approve / Reject through the real Bolt app over HTTP, with signed interactivity payloads
as Slack sends them, the Web API answered by the local Slack server, and a real MLflow
registry on sqlite. The deployer records its calls, so a test can count deploys exactly.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from slack_sdk import WebClient

from ganops.bot.adapters.registry import MlflowRegistry
from ganops.bot.app import create_app
from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.blocks import blocks_to_dicts, section
from ganops.bot.blocks.runs import approval_buttons
from ganops.bot.local.shell import TrackingExecutor
from ganops.bot.local.slack import LocalSlack
from ganops.bot.ports import Approval, PipelineLauncher
from ganops.bot.runs.record import RunBook
from ganops.bot.services import Services
from ganops.bot.settings import Secret, Settings
from ganops.bot.store import Store
from ganops.bot.transports import HttpTransport
from tests.fakes.approvals import RecordingDeployer
from tests.fakes.slack import eventually

SECRET, TOKEN, CHANNEL = "test-signing-secret", "xoxb-test", "C_OPS"
ALICE, BOB, CAROL, MALLORY = "U_ALICE", "U_BOB", "U_CAROL", "U_MALLORY"
_models = itertools.count(1)


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> str:
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    shutil.copyfile(mlflow_template, path)  # the session's migrated store
    return f"sqlite:///{path}"


@pytest.fixture
def model(mlflow_uri: str) -> str:
    """A fresh registered model with versions 1..3 and champion -> 1 (one per test)."""
    from mlflow import MlflowClient

    name = f"t{next(_models)}"
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    client.create_registered_model(f"ganops-{name}")
    for _ in range(3):
        client.create_model_version(f"ganops-{name}", source="/tmp/none")
    client.set_registered_model_alias(f"ganops-{name}", "champion", "1")
    return name


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class _NoLauncher:
    """These tests never launch a run; a call here would be a bug."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the approval path must not touch the launcher ({name})")


@dataclass
class Bot:
    slack: LocalSlack
    http: HttpTransport
    book: ApprovalBook
    deployer: RecordingDeployer
    registry: MlflowRegistry
    clock: Clock
    executor: TrackingExecutor
    settings: Settings
    services: Services

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}/slack/events"

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every lazy listener started so far has finished."""
        eventually(lambda: self.executor.busy == 0, timeout)

    def stop(self) -> None:
        self.settle()
        self.executor.shutdown(wait=True)
        self.http.stop()


def start_bot(
    state_dir: Path,
    slack: LocalSlack,
    mlflow_uri: str,
    ttl_s: float = 3600,
    deployer: RecordingDeployer | None = None,
) -> Bot:
    """The Bolt app over HTTP. Pass the `deployer` of a bot that stopped to restart it: the
    model server outlives the bot."""
    settings = Settings(
        state_dir=state_dir,
        mlflow_uri=mlflow_uri,
        bot_token=Secret(TOKEN),
        signing_secret=Secret(SECRET),
        slack_api_url=slack.url,
        channel=CHANNEL,
        approvers=(BOB, CAROL),
        transport="http",
        http_port=0,
    )
    store = Store(state_dir)
    registry = MlflowRegistry(mlflow_uri)
    deployer = deployer if deployer is not None else RecordingDeployer()
    clock = Clock()
    book = ApprovalBook(
        store, registry, deployer, approvers=frozenset({BOB, CAROL}), ttl_s=ttl_s, clock=clock
    )
    services = Services(
        store=store,
        runbook=RunBook(store),
        launcher=cast(PipelineLauncher, _NoLauncher()),
        registry=registry,
        slack=WebClient(token=TOKEN, base_url=slack.url),
        approvals=book,
        deployer=deployer,
    )
    executor = TrackingExecutor()
    app = create_app(settings, services, listener_executor=executor)
    http = HttpTransport(app, 0, host="127.0.0.1").start()
    return Bot(slack, http, book, deployer, registry, clock, executor, settings, services)


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    server = LocalSlack(token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def bot(tmp_path: Path, slack: LocalSlack, mlflow_uri: str) -> Iterator[Bot]:
    b = start_bot(tmp_path / "state", slack, mlflow_uri)
    yield b
    b.stop()


def post_card(bot: Bot, model: str, version: str = "2") -> tuple[Approval, dict[str, Any]]:
    """What the results card does: open the approval, post the card, attach it."""
    approval = bot.book.request(
        model=model,
        version=version,
        model_uri=f"models:/ganops-{model}/{version}",
        requested_by=ALICE,
        channel=CHANNEL,
    )
    blocks = blocks_to_dicts(
        [section(f"*{model} v{version}* awaits approval"), approval_buttons(approval.approval_id)]
    )
    client = WebClient(token=TOKEN, base_url=bot.slack.url)
    resp = client.chat_postMessage(channel=CHANNEL, text="results", blocks=blocks)
    bot.book.attach_message(approval.approval_id, CHANNEL, str(resp["ts"]), blocks)
    return approval, dict(resp["message"])


def click_payload(user: str, action: str, approval: Approval, message: dict[str, Any]) -> str:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T1"},
        "api_app_id": "A1",
        "token": "legacy",
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": CHANNEL},
        "trigger_id": "1.2.3",
        "team": {"id": "T1", "domain": "ops"},
        "channel": {"id": CHANNEL, "name": "ganops"},
        "message": message,
        "actions": [
            {
                "action_id": action,
                "block_id": f"approval:{approval.approval_id}",
                "value": approval.approval_id,
                "type": "button",
                "action_ts": str(time.time()),
            }
        ],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def send(
    bot: Bot, body: str, secret: str = SECRET, age_s: float = 0, retry: int | None = None
) -> int:
    """POST a signed request the way Slack does; return the HTTP status."""
    ts = str(int(time.time() - age_s))
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }
    if retry is not None:
        headers["X-Slack-Retry-Num"] = str(retry)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    request = urllib.request.Request(bot.url, body.encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def click(bot: Bot, user: str, action: str, approval: Approval, message: dict[str, Any]) -> int:
    return send(bot, click_payload(user, action, approval, message))


def card(slack: LocalSlack, ts: str) -> dict[str, Any]:
    return next(m for m in slack.messages(CHANNEL) if m["ts"] == ts)


def thread(slack: LocalSlack, ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages(CHANNEL) if m.get("thread_ts") == ts]


def buttons(message: dict[str, Any]) -> list[str]:
    return [
        e.get("action_id")
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b.get("elements", [])
    ]


def ephemeral_to(slack: LocalSlack, user: str) -> str:
    found = slack.wait_for(lambda s: s.ephemerals(user))
    return str(found[-1]["text"])


def test_an_allowed_click_deploys_and_updates_the_card(bot: Bot, model: str) -> None:
    approval, message = post_card(bot, model)
    assert click(bot, BOB, "approve", approval, message) == 200
    [reply] = bot.slack.wait_for(lambda s: thread(s, message["ts"]))
    assert f"Deployed {model} v2" in reply["text"]
    assert "rolled out 1/1 replicas" in reply["text"]
    assert bot.deployer.calls == [(model, "2", f"models:/ganops-{model}/2")]
    shown = bot.slack.wait_for(lambda s: "live in" in json.dumps(card(s, message["ts"])) or None)
    assert shown
    updated = card(bot.slack, message["ts"])
    assert buttons(updated) == []
    assert f"Approved by <@{BOB}> at " in json.dumps(updated["blocks"])
    assert bot.registry.get_alias(model, "champion").version == "2"  # type: ignore[union-attr]
    assert bot.registry.get_alias(model, "previous_champion").version == "1"  # type: ignore[union-attr]
    tags = bot.registry.get_version(model, "2").tags  # type: ignore[union-attr]
    assert (tags["approved_by"], tags["decision"]) == (BOB, "approved")


def test_an_unauthorized_click_is_refused_and_audited(bot: Bot, model: str) -> None:
    approval, message = post_card(bot, model)
    assert click(bot, MALLORY, "approve", approval, message) == 200
    bot.settle()
    assert ephemeral_to(bot.slack, MALLORY) == "You are not an approver."
    assert bot.slack.calls("chat.update") == []  # the card is unchanged
    assert card(bot.slack, message["ts"])["blocks"] == message["blocks"]
    assert bot.deployer.calls == []
    audit = bot.book.store.list_audit(obj=approval.approval_id)
    assert (audit[0].actor, audit[0].action, audit[0].outcome) == (MALLORY, "decide", "refused")
    assert bot.book.get(approval.approval_id).state == "pending"  # type: ignore[union-attr]


def test_a_double_click_and_a_retry_deploy_once(bot: Bot, model: str) -> None:
    approval, message = post_card(bot, model)
    bodies = [
        click_payload(BOB, "approve", approval, message),
        click_payload(CAROL, "approve", approval, message),
    ]
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda b=b: statuses.append(send(bot, b))) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200, 200]
    assert send(bot, bodies[0], retry=1) == 200  # Slack's retry of the first click
    bot.settle()
    late = bot.slack.ephemerals()
    assert len(late) == 2
    assert all("Already approved by <@" in e["text"] for e in late)
    assert len(bot.deployer.calls) == 1
    assert len(thread(bot.slack, message["ts"])) == 1


def test_a_click_after_expiry_is_refused(bot: Bot, model: str) -> None:
    approval, message = post_card(bot, model)
    bot.clock.now += 3601
    assert click(bot, BOB, "approve", approval, message) == 200
    assert "expired" in ephemeral_to(bot.slack, BOB)
    updated = bot.slack.wait_for(lambda s: "Expired at" in json.dumps(card(s, message["ts"])))
    assert updated
    assert buttons(card(bot.slack, message["ts"])) == []
    assert bot.deployer.calls == []
    assert bot.book.get(approval.approval_id).state == "expired"  # type: ignore[union-attr]


@pytest.mark.parametrize(("secret", "age_s"), [("forged", 0), (SECRET, 600)])
def test_a_forged_or_stale_request_gets_401(
    bot: Bot, model: str, secret: str, age_s: float
) -> None:
    approval, message = post_card(bot, model)
    body = click_payload(BOB, "approve", approval, message)
    assert send(bot, body, secret=secret, age_s=age_s) == 401
    bot.settle()
    assert bot.deployer.calls == []
    assert [r.action for r in bot.book.store.list_audit(obj=approval.approval_id)] == ["request"]


def test_a_pending_approval_survives_a_bot_restart(
    tmp_path: Path, slack: LocalSlack, mlflow_uri: str, model: str
) -> None:
    first = start_bot(tmp_path / "state", slack, mlflow_uri)
    approval, message = post_card(first, model, "3")
    first.stop()
    second = start_bot(tmp_path / "state", slack, mlflow_uri)
    try:
        assert click(second, CAROL, "approve", approval, message) == 200
        second.settle()
        assert len(thread(slack, message["ts"])) == 1
        assert second.deployer.calls == [(model, "3", f"models:/ganops-{model}/3")]
        assert first.deployer.calls == []
        assert second.registry.get_alias(model, "champion").version == "3"  # type: ignore[union-attr]
    finally:
        second.stop()
