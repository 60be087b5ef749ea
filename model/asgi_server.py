"""uvicorn on a socket bound up front, run from a plain thread: what `ganops serve` and the
bot's HTTP transport share. Binding first gives the real port at once (port 0 in tests) and a
bind error before anything starts. A torch-free leaf, so the bot may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Generator
from typing import Any

import uvicorn


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: any free port). Raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: h11 writes a response's head and body separately, and
    # with Nagle on, the body waits for the client's delayed ACK (~40 ms a request).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(256)  # a burst of slash commands or requests waits here, not refused
    except OSError:
        sock.close()
        raise
    return sock


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, told to stop from another thread at once. Its own loop notices
    `should_exit` on a 0.1 s tick and then waits another 0.1 s for open connections even when
    there are none: 0.2 s for every stop, which each test that starts a server paid."""

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The commands handle SIGTERM themselves (drain, exit 0); uvicorn would re-raise it.
        yield

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):  # the tick that keeps the Date header fresh
                await asyncio.wait_for(self._wake.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    def wake(self) -> None:
        """From any thread, after setting `should_exit`: the loop checks it now."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(wake.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets)  # let them finish, as uvicorn does
            return
        for server in self.servers:  # nothing in flight: no grace period to wait out
            server.close()
        for sock in sockets or []:
            sock.close()
        for server in self.servers:
            await server.wait_closed()


class AsgiServer:
    """`app` served by uvicorn on `sock`, with a socketserver-like surface."""

    def __init__(
        self, app: Any, sock: socket.socket, *, http: Any = "h11", graceful_s: float = 10.0
    ) -> None:
        self.socket = sock
        self.server_address: tuple[str, int] = sock.getsockname()[:2]
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            http=http,
            timeout_keep_alive=30,  # seconds an idle keep-alive connection stays open
            timeout_graceful_shutdown=int(graceful_s),  # for in-flight requests after stop()
        )
        self._server = _Uvicorn(config)
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def serve_forever(self) -> None:
        """Serve on this thread until `stop()`."""
        try:
            asyncio.run(self._server.serve(sockets=[self.socket]))
        finally:
            self._done.set()

    def start(self) -> AsgiServer:
        """Serve on a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="asgi", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the server to stop; safe from a signal handler."""
        self._server.should_exit = True
        self._server.wake()

    def shutdown(self) -> None:
        """Stop, and wait until the server has finished."""
        self.stop()
        self._done.wait()

    def server_close(self) -> None:
        self.socket.close()


__all__ = ["AsgiServer", "bind"]
