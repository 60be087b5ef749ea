"""kmock's emulated API server on a background event loop, for the synchronous kubernetes
client: `serve_kmock(fake)` starts `fake` (anything with `loop`, `start()` and `stop()`),
yields it, and stops it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar


class OnLoop(Protocol):
    loop: asyncio.AbstractEventLoop

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


F = TypeVar("F", bound=OnLoop)


@contextmanager
def serve_kmock(fake: F) -> Iterator[F]:
    thread = threading.Thread(target=fake.loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(fake.start(), fake.loop).result(timeout=10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), fake.loop).result(timeout=10)
        fake.loop.call_soon_threadsafe(fake.loop.stop)
        thread.join(timeout=10)


async def open_emulator() -> tuple[Any, Any, str]:
    """A started kmock KubernetesEmulator and its HTTP server; (handler, server, url)."""
    import kmock

    handler = kmock.KubernetesEmulator()
    await handler.__aenter__()
    server = kmock.Server(handler)
    await server.__aenter__()
    return handler, server, str(server.url).rstrip("/")


async def close_emulator(handler: Any, server: Any) -> None:
    await server.__aexit__(None, None, None)
    await handler.__aexit__(None, None, None)
