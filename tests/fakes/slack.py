"""The bot under test, as Slack sees it: the real Bolt app behind the real HTTP transport on
a loopback port, its Web API pointed at `LocalSlack`, and requests signed like Slack's.

Signatures are computed here from the signing secret (v0:timestamp:body, HMAC-SHA256), not
with the SDK's helper, so a bug in how the bot verifies them cannot hide in both places.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from slack_bolt import App

from ganops.bot.adapters.registry import MlflowRegistry
from ganops.bot.app import create_app
from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.local.shell import TrackingExecutor
from ganops.bot.local.slack import LocalSlack
from ganops.bot.ports import ModelRegistry, PipelineLauncher
from ganops.bot.runs.record import RunBook
from ganops.bot.runs.watch import ChannelLimiter, RunWatcher
from ganops.bot.services import Services, slack_client
from ganops.bot.settings import Settings, load_settings
from ganops.bot.store import Store
from ganops.bot.transports import HttpTransport
from tests.fakes.approvals import RecordingDeployer

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-test-token"
CHANNEL = "C_TEST"
ALICE, BOB, CAROL = "U_ALICE", "U_BOB", "U_CAROL"


def sign(body: str, timestamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={mac}"}


def make_settings(tmp_path: Path, slack: LocalSlack, **env: str) -> Settings:
    base = {
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.url,
        "GANOPS_CHANNEL": CHANNEL,
        "GANOPS_APPROVERS": CAROL,
        "GANOPS_STATE_DIR": str(tmp_path / "state"),
    }
    return load_settings(base | env, http=True, port=0)


def make_services(
    settings: Settings,
    launcher: PipelineLauncher,
    registry: ModelRegistry | None = None,
    deployer: RecordingDeployer | None = None,
) -> Services:
    """The bot's services with the real store, run book and approvals, and the given ports."""
    store = Store(settings.state_dir)
    registry = registry or MlflowRegistry(settings.mlflow_uri)  # connects only when used
    deployer = deployer or RecordingDeployer()
    approvals = ApprovalBook(
        store,
        registry,
        deployer,
        approvers=frozenset(settings.approvers),
        allow_self=settings.allow_self_approval,
        required=settings.approvals_required,
        ttl_s=settings.approval_ttl_s,
    )
    return Services(
        store=store,
        runbook=RunBook(store),
        launcher=launcher,
        registry=registry,
        slack=slack_client(settings),
        approvals=approvals,
        deployer=deployer,
    )


@dataclass
class Bot:
    slack: LocalSlack
    settings: Settings
    services: Services
    app: App
    http: HttpTransport
    executor: TrackingExecutor

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}/slack/events"

    def watcher(self, limiter: ChannelLimiter | None = None) -> RunWatcher:
        return RunWatcher(
            self.services,
            self.settings.state_dir / "slack-files",
            limiter=limiter or ChannelLimiter(0.0),
        )

    def send(
        self,
        body: str,
        content_type: str,
        headers: dict[str, str] | None = None,
        signed: bool = True,
    ) -> requests.Response:
        """POST to the events endpoint, signed right unless `signed` is False; `headers` win."""
        all_headers = {"Content-Type": content_type} | (sign(body) if signed else {})
        all_headers |= headers or {}
        return requests.post(self.url, data=body.encode(), headers=all_headers, timeout=10)

    def slash(
        self,
        command: str,
        text: str,
        user: str = ALICE,
        trigger_id: str = "trigger-1",
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        body = urlencode(self.slash_form(command, text, user, trigger_id))
        return self.send(body, "application/x-www-form-urlencoded", headers)

    def slash_form(self, command: str, text: str, user: str, trigger_id: str) -> dict[str, str]:
        return {
            "token": "legacy",
            "team_id": "T_TEST",
            "team_domain": "test",
            "channel_id": CHANNEL,
            "channel_name": "ganops",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A_TEST",
            "response_url": self.slack.response_url(CHANNEL, user),
            "trigger_id": trigger_id,
        }

    def interact(self, payload: dict[str, Any]) -> requests.Response:
        """POST an interactivity payload (view_submission, block_actions…) as Slack does."""
        body = urlencode({"payload": json.dumps(payload)})
        return self.send(body, "application/x-www-form-urlencoded")

    def event(self, event: dict[str, Any]) -> requests.Response:
        """POST an Events API callback, signed, wrapping `event`."""
        body = {
            "token": "legacy",
            "team_id": "T_TEST",
            "api_app_id": "A_TEST",
            "type": "event_callback",
            "event_id": f"Ev{time.time_ns()}",
            "event_time": int(time.time()),
            "event": event,
        }
        return self.send(json.dumps(body), "application/json")

    def click(self, action_id: str, value: str, user: str, message_ts: str) -> requests.Response:
        payload = {
            "type": "block_actions",
            "team": {"id": "T_TEST", "domain": "test"},
            "user": {"id": user, "username": user.lower(), "team_id": "T_TEST"},
            "api_app_id": "A_TEST",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": CHANNEL},
            "trigger_id": f"click-{time.time()}",
            "channel": {"id": CHANNEL, "name": "ganops"},
            "message": next(m for m in self.slack.messages(CHANNEL) if m["ts"] == message_ts),
            "response_url": self.slack.response_url(CHANNEL, user, message_ts),
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b",
                    "value": value,
                    "text": {"type": "plain_text", "text": action_id},
                    "action_ts": str(time.time()),
                }
            ],
        }
        return self.interact(payload)

    def settle(self) -> None:
        """Wait until every lazy listener started so far has finished. The app acks with
        `process_before_response`, so Bolt hands a request's lazy listeners to the executor
        before its response leaves: after a response, a (wrong) launch has already run."""
        eventually(lambda: self.executor.busy == 0)

    def stop(self) -> None:
        self.settle()  # let lazy listeners finish their posts
        self.executor.shutdown(wait=True)
        self.http.stop()
        self.slack.stop()


def start_bot(
    tmp_path: Path,
    launcher: PipelineLauncher,
    services: Callable[[Settings], Services] | None = None,
    **env: str,
) -> Bot:
    slack = LocalSlack(token=TOKEN).start()
    settings = make_settings(tmp_path, slack, **env)
    built = services(settings) if services else make_services(settings, launcher)
    executor = TrackingExecutor()
    app = create_app(settings, built, listener_executor=executor)
    http = HttpTransport(app, 0, host="127.0.0.1").start()
    return Bot(slack, settings, built, app, http, executor)


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        element
        for block in message.get("blocks") or []
        if block.get("type") == "actions"
        for element in block.get("elements") or []
    ]


def eventually(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `predicate` until it is truthy (lazy listeners finish after the ack): often at
    first, as most conditions hold within milliseconds, then every 50 ms."""
    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("the condition never held")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
