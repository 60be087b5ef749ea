"""How Slack reaches the app: Socket Mode, or Bolt's HTTP endpoint at /slack/events.

(The third transport, the shell adapter, lives in `bot.local.shell`.) HTTP is Starlette under
uvicorn, with Bolt's Starlette adapter translating requests and responses. `app.dispatch` runs
on a worker thread, not the event loop, so a burst of slash commands is acked in parallel. The
same server answers `/healthz` and the bot's `/metrics`; in Socket Mode it serves only those
two (`ganops bot --health-port N`), for the pod's probes and Prometheus.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ganops.bot.metrics import CONTENT_TYPE, METRICS
from ganops.bot.services import web_client
from ganops.bot.settings import Settings
from ganops.model.asgi_server import AsgiServer, bind

log = logging.getLogger("ganops.bot")
EVENTS_PATH = "/slack/events"
DISPATCH_THREADS = 64
MAX_BODY = 1 << 20  # Slack's payloads are a few KiB; anything near this is not Slack


class _TooLarge(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused from Content-Length before reading, or once past `limit` (chunked)."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_web_app(app: App | None, *, max_body: int = MAX_BODY) -> Starlette:
    """`/healthz`, `/metrics` and, with a Bolt `app`, `POST /slack/events`."""
    # Acks only parse, but a burst must not queue behind a few: a thread per request in flight.
    pool = ThreadPoolExecutor(DISPATCH_THREADS, thread_name_prefix="bolt-dispatch")

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def metrics(_: Request) -> Response:
        return Response(METRICS.exposition(), media_type=CONTENT_TYPE)

    async def events(request: Request) -> Response:
        assert app is not None
        try:
            body = await _body(request, max_body)
        except _TooLarge:
            return PlainTextResponse(f"body over {max_body} bytes", 413)
        # Bolt's App is synchronous (listeners ack on the request's thread): off the loop.
        bolt_request = to_bolt_request(request, body)
        loop = asyncio.get_running_loop()
        bolt_response = await loop.run_in_executor(pool, app.dispatch, bolt_request)
        return to_starlette_response(bolt_response)

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("not found", 404)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if app is not None:
        routes.append(Route(EVENTS_PATH, events, methods=["POST"]))
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})


class HttpTransport:
    """Bolt's HTTP endpoint on `host:port` (port 0: any free port; see `.port`). With no
    `app`, only `/healthz` and `/metrics` (Socket Mode's side port)."""

    def __init__(
        self, app: App | None, port: int, host: str = "0.0.0.0", *, max_body: int = MAX_BODY
    ) -> None:
        self.server = AsgiServer(create_web_app(app, max_body=max_body), bind(host, port))
        self._events = app is not None

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> HttpTransport:
        """Serve in a background thread (tests, Socket Mode's side port)."""
        self.server.start()
        return self

    def serve_forever(self) -> None:
        host, port = self.server.server_address
        what = EVENTS_PATH if self._events else "/healthz and /metrics"
        log.info("listening on http://%s:%d (%s)", host, port, what)
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
