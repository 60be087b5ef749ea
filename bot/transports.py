"""How Slack reaches the app: Socket Mode, or Bolt's HTTP endpoint at /slack/events.

(The third transport, the shell adapter, lives in `bot.local.shell`.) The HTTP server is a small
threading server around `app.dispatch`, like Bolt's own development server but with one
thread per request and a deep accept queue, so that a burst of slash commands is acked in
parallel instead of queueing behind one another.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot.services import web_client
from bot.settings import Settings

log = logging.getLogger("ganops.bot")
EVENTS_PATH = "/slack/events"


class _BoltHandler(BaseHTTPRequestHandler):
    app: App
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == "/healthz":
            self._send(BoltResponse(status=200, body="ok"))
        else:
            self._send(BoltResponse(status=404, body="not found"))

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8")
        if path != EVENTS_PATH:
            self._send(BoltResponse(status=404, body="not found"))
            return
        headers: dict[str, str | Sequence[str]] = {k.lower(): v for k, v in self.headers.items()}
        request = BoltRequest(body=body, query=query, headers=headers)
        self._send(self.app.dispatch(request))

    def _send(self, response: BoltResponse) -> None:
        data = (response.body or "").encode("utf-8")
        self.send_response(response.status)
        for name, values in response.headers.items():
            if name.lower() == "content-length":
                continue
            for value in values:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


class HttpTransport:
    """Bolt's HTTP endpoint on `host:port` (port 0: any free port; see `.port`)."""

    def __init__(self, app: App, port: int, host: str = "0.0.0.0") -> None:
        handler = type("Handler", (_BoltHandler,), {"app": app})
        self.server = _Server((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> HttpTransport:
        """Serve in a background thread (tests, benchmarks)."""
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        log.info("listening for Slack on http://%s:%d%s", *self.server.server_address, EVENTS_PATH)
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def socket_mode_handler(app: App, settings: Settings) -> SocketModeHandler:
    """Bolt's Socket Mode adapter for `app`, not yet connected."""
    assert settings.app_token is not None, "settings guarantee both tokens in Socket Mode"
    # apps.connections.open goes to the same (possibly proxied) Web API as everything else.
    web = web_client(settings, token=None)
    return SocketModeHandler(app, app_token=settings.app_token.reveal(), web_client=web)


def run_socket_mode(app: App, settings: Settings) -> None:
    """Connect to Slack over a websocket (no public URL needed); blocks until stopped."""
    socket_mode_handler(app, settings).start()
