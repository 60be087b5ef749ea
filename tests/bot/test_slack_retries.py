"""Every WebClient the bot builds rides out Slack's bad moments: a 429 is retried after its
`Retry-After`, a 5xx with backoff; the local Slack injects both, as slack.com would."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler

from ganops.bot.app import create_app
from ganops.bot.local.slack import LocalSlack
from ganops.bot.services import slack_client
from ganops.bot.transports import socket_mode_handler
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import CHANNEL, TOKEN, make_services, make_settings


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    slack = LocalSlack(token=TOKEN).start()
    yield slack
    slack.stop()


@pytest.mark.slow
def test_a_429_is_retried_after_its_retry_after(slack: LocalSlack, tmp_path: Path) -> None:
    client = slack_client(make_settings(tmp_path, slack))
    slack.rate_limit(every=3, retry_after_s=1)
    started = time.monotonic()
    for i in range(4):
        client.chat_postMessage(channel=CHANNEL, text=f"message {i}")
    assert [m["text"] for m in slack.messages(CHANNEL)] == [f"message {i}" for i in range(4)]
    assert slack.refused() == [("chat.postMessage", 429)]
    assert time.monotonic() - started >= 1.0  # it waited as long as Slack asked


@pytest.mark.slow
def test_server_errors_are_retried_and_slack_errors_are_not(
    slack: LocalSlack, tmp_path: Path
) -> None:
    client = slack_client(make_settings(tmp_path, slack))
    slack.server_error("chat.postMessage", 503, 500)
    client.chat_postMessage(channel=CHANNEL, text="through")
    assert [m["text"] for m in slack.messages(CHANNEL)] == ["through"]
    assert slack.refused() == [("chat.postMessage", 503), ("chat.postMessage", 500)]
    slack.channel_state(CHANNEL, archived=True)
    with pytest.raises(SlackApiError) as info:
        client.chat_postMessage(channel=CHANNEL, text="into an archived channel")
    assert info.value.response["error"] == "is_archived"
    assert len(slack.calls("chat.postMessage")) == 2  # an answer, not a fault: asked once


def test_every_client_the_bot_builds_has_the_same_handlers(
    slack: LocalSlack, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, slack, SLACK_APP_TOKEN="xapp-test")
    services = make_services(settings, ScriptedLauncher())
    app = create_app(settings, services)
    clients = [services.slack, app.client, socket_mode_handler(app, settings).client.web_client]
    for client in clients:
        kinds = {type(h) for h in client.retry_handlers or []}
        assert {RateLimitErrorRetryHandler, ServerErrorRetryHandler} <= kinds
