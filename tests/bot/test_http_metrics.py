"""The bot's HTTP server beyond /slack/events: /healthz, its own /metrics, the body limit, and
the health-only side port Socket Mode uses."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.errors import SlackApiError

from ganops.bot.transports import MAX_BODY, HttpTransport
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import CHANNEL, Bot, eventually, start_bot


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[Bot]:
    bot = start_bot(tmp_path, ScriptedLauncher())
    yield bot
    bot.stop()


def samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_healthz(bot: Bot) -> None:
    response = requests.get(f"http://127.0.0.1:{bot.http.port}/healthz", timeout=10)
    assert (response.status_code, response.text) == (200, "ok")
    assert requests.get(f"http://127.0.0.1:{bot.http.port}/nope", timeout=10).status_code == 404


def test_commands_runs_and_slack_errors_are_counted(bot: Bot) -> None:
    command = ("ganops_bot_commands_total", frozenset({("command", "/ganops")}))
    before = samples(bot.http.port).get(command, 0.0)
    assert bot.slash("/ganops", "help").status_code == 200
    assert bot.slash("/retrain", "epochs=2").status_code == 200
    assert samples(bot.http.port)[command] == before + 1

    def runs() -> float:
        values = samples(bot.http.port)
        return sum(v for (name, _), v in values.items() if name == "ganops_bot_runs")

    assert eventually(lambda: runs() >= 1)

    error = (
        "ganops_bot_slack_api_errors_total",
        frozenset({("method", "chat.update"), ("error", "message_not_found")}),
    )
    before = samples(bot.http.port).get(error, 0.0)
    with pytest.raises(SlackApiError):
        bot.services.slack.chat_update(channel=CHANNEL, ts="1.000001", text="gone")
    assert samples(bot.http.port)[error] == before + 1


def test_a_body_over_the_limit_is_refused_before_it_is_read(bot: Bot) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", bot.http.port, timeout=10)
    conn.putrequest("POST", "/slack/events")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(MAX_BODY + 1))
    conn.endheaders()  # and no body: the answer must not wait for it
    assert conn.getresponse().status == 413
    conn.close()
    assert bot.slash("/ganops", "help").status_code == 200


def test_socket_modes_side_port_serves_health_and_metrics_only() -> None:
    side = HttpTransport(None, 0, host="127.0.0.1").start()
    try:
        base = f"http://127.0.0.1:{side.port}"
        assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
        assert "ganops_bot_commands_total" in requests.get(f"{base}/metrics", timeout=10).text
        assert requests.post(f"{base}/slack/events", data="{}", timeout=10).status_code == 404
    finally:
        side.stop()
