"""Socket Mode end to end: Bolt's built-in Socket Mode client opens a real websocket to a local
server (aiohttp) that plays Slack, receives slash-command envelopes, and acks them; the same
listeners run as over HTTP and in the shell."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from ganops.bot.app import create_app
from ganops.bot.local.slack import LocalSlack
from ganops.bot.settings import load_settings
from ganops.bot.transports import socket_mode_handler
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import TOKEN, make_services

APP_TOKEN = "xapp-1-test"


@dataclass
class SocketSlack:
    """The websocket side of Slack: pushes envelopes, collects the acks."""

    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    outbox: asyncio.Queue[dict[str, Any]] | None = None
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    acked: threading.Condition = field(default_factory=threading.Condition)
    port: int = 0

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": 1})
        assert self.outbox is not None

        async def pump() -> None:
            while True:
                await ws.send_json(await self.outbox.get())  # type: ignore[union-attr]

        pumping = asyncio.create_task(pump())
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)
                with self.acked:
                    self.acks[data["envelope_id"]] = data
                    self.acked.notify_all()
        pumping.cancel()
        return ws

    def start(self) -> SocketSlack:
        ready = threading.Event()

        async def serve() -> None:
            self.outbox = asyncio.Queue()
            app = web.Application()
            app.router.add_get("/link", self._socket)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(serve())
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)
        return self

    def send(self, envelope: dict[str, Any]) -> None:
        assert self.outbox is not None
        self.loop.call_soon_threadsafe(self.outbox.put_nowait, envelope)

    def ack_of(self, envelope_id: str, timeout: float = 15) -> dict[str, Any]:
        with self.acked:
            assert self.acked.wait_for(lambda: envelope_id in self.acks, timeout)
            return self.acks[envelope_id]


@pytest.fixture
def wired(tmp_path: Path) -> Iterator[tuple[SocketSlack, LocalSlack, ScriptedLauncher]]:
    socket = SocketSlack().start()
    slack = LocalSlack(token=TOKEN).start()
    slack.app_token, slack.socket_url = APP_TOKEN, f"ws://127.0.0.1:{socket.port}/link"
    env = {"SLACK_BOT_TOKEN": TOKEN, "SLACK_APP_TOKEN": APP_TOKEN, "SLACK_API_URL": slack.url,
           "GANOPS_CHANNEL": "C_TEST", "GANOPS_STATE_DIR": str(tmp_path / "state")}  # fmt: skip
    settings = load_settings(env)
    assert settings.transport == "socket"
    launcher = ScriptedLauncher()
    handler = socket_mode_handler(create_app(settings, make_services(settings, launcher)), settings)
    handler.connect()
    yield socket, slack, launcher
    handler.close()
    slack.stop()


def envelope(envelope_id: str, text: str) -> dict[str, Any]:
    payload = {"team_id": "T1", "channel_id": "C_TEST", "user_id": "U_ALICE",
               "command": "/retrain", "text": text, "trigger_id": f"trig-{envelope_id}",
               "response_url": "https://example.invalid/r"}  # fmt: skip
    return {"envelope_id": envelope_id, "type": "slash_commands", "payload": payload,
            "accepts_response_payload": True}  # fmt: skip


@pytest.mark.slow
def test_slash_commands_over_socket_mode(
    wired: tuple[SocketSlack, LocalSlack, ScriptedLauncher],
) -> None:
    socket, slack, launcher = wired
    socket.send(envelope("env-bad", "epochs=lots"))
    bad = socket.ack_of("env-bad")
    assert "epochs='lots' is not an integer" in bad["payload"]["text"]

    socket.send(envelope("env-good", "epochs=2"))
    assert "payload" not in socket.ack_of("env-good")  # acked empty
    [message] = slack.wait_for(lambda s: s.messages("C_TEST"))
    assert "<@U_ALICE>" in str(message["blocks"])
    assert launcher.launches == 1
    [opened] = slack.calls("apps.connections.open")
    assert opened.token == APP_TOKEN  # the app-level token opened the socket
