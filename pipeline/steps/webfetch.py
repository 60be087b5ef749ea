"""Download one http(s) URL under the fetch rules (`fetchguard`): pinned address, manual redirects.

A stock HTTP client resolves the host again when it connects, so a name that resolved outward
for the check can resolve inward for the connection (DNS rebinding), and it follows redirects
without asking. Here each hop is checked by `fetchguard.check_url`, the connection goes to an
address that check returned, and the request carries the name (Host header, TLS SNI and
certificate check), so virtual hosts and TLS work as they would by name.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin

from ganops.pipeline.steps.fetchguard import (
    DataRules,
    FetchError,
    FetchRefused,
    Resolver,
    WebTarget,
    check_url,
    system_resolver,
)

# (address, port), timeout -> a connected socket; injectable so a test can see every connect.
Connector = Callable[[tuple[str, int], float], socket.socket]
MAX_HOPS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 1 << 20


def _create_connection(address: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


def fetch_url(
    url: str,
    dest: Path,
    *,
    rules: DataRules,
    resolver: Resolver = system_resolver,
    connect: Connector = _create_connection,
    max_hops: int = MAX_HOPS,
    timeout_s: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> str:
    """Write the body at `url` to `dest`, following at most `max_hops` redirects.

    Returns the URL that answered (normalised).

    Raises:
        FetchRefused: `url` or a redirect breaks a fetch rule (checked before connecting).
        FetchError: no connection, or an answer other than 200.
    """
    current, previous = url, ""
    for _ in range(max_hops + 1):
        try:
            target = check_url(current, rules, resolver)
        except FetchRefused as exc:
            hop = f" (redirected from {previous})" if previous else ""
            raise FetchRefused(f"{exc}{hop}") from None
        previous = target.url
        conn, response = _request(target, connect, timeout_s, tls)
        try:
            if response.status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"{target.url} answered {response.status} with no Location")
                current = urljoin(target.url, location)
                continue
            if response.status != 200:
                raise FetchError(
                    f"{target.url} answered HTTP {response.status} {response.reason}".rstrip()
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            with dest.open("wb") as out:
                shutil.copyfileobj(response, out, _CHUNK)
            return target.url
        finally:
            conn.close()
    raise FetchRefused(f"refused: {url} redirects more than {max_hops} times")


def _request(
    target: WebTarget, connect: Connector, timeout_s: float, tls: ssl.SSLContext | None
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """GET from the first checked address that accepts a connection."""
    error: Exception | None = None
    for address in target.addresses:
        conn = _connection(target, address, connect, timeout_s, tls)
        try:
            conn.request("GET", target.request_path, headers={"User-Agent": "ganops-ingest"})
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            error = exc
    raise FetchError(f"cannot fetch {target.url} from {', '.join(target.addresses)}: {error}")


def _connection(
    target: WebTarget,
    address: str,
    connect: Connector,
    timeout_s: float,
    tls: ssl.SSLContext | None,
) -> http.client.HTTPConnection:
    if target.scheme == "https":
        return _PinnedHTTPS(
            target.host,
            target.port,
            address=address,
            connect=connect,
            timeout=timeout_s,
            context=tls or ssl.create_default_context(),
        )
    return _PinnedHTTP(
        target.host, target.port, address=address, connect=connect, timeout=timeout_s
    )


class _PinnedHTTP(http.client.HTTPConnection):
    """Talks to `address` while naming `host` (the Host header comes from `host`)."""

    def __init__(
        self, host: str, port: int, *, address: str, connect: Connector, timeout: float
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address, self._connect, self._timeout_s = address, connect, timeout

    def connect(self) -> None:
        self.sock = self._connect((self._address, self.port), self._timeout_s)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to `address`, with SNI and the certificate check for `host`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        address: str,
        connect: Connector,
        timeout: float,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address, self._connect, self._tls = address, connect, context
        self._timeout_s = timeout

    def connect(self) -> None:
        sock = self._connect((self._address, self.port), self._timeout_s)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
