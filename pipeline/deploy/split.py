"""The local split: one loopback address in front of the stable and the canary model server.

The LocalDeployer starts it once (`python -m ganops.pipeline.deploy.split --port P --routes
FILE`) in its own session, so it outlives a bot restart like the servers do. Each HTTP
request, not each connection, goes to the canary with the routes file's probability, so a
keep-alive client (tritonclient, requests.Session) is split too. Bodies, headers and status
codes pass through unchanged (only hop-by-hop headers are not forwarded, as RFC 9110 says);
a backend that is down is a 502 that names it. `GET /healthz` is the front's own.

The routes file (`{"stable": url|null, "canary": url|null, "percent": 0..100}`) is re-read when
it changes; the deployer replaces it atomically. Stdlib only: it starts in ~0.1 s.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import ipaddress
import json
import os
import random
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

# Per connection, never forwarded (RFC 9110 7.6.1); the body is re-framed by length.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Answered or re-framed here: the body is read whole (100-continue sent) before forwarding.
NOT_FORWARDED = frozenset({"content-length", "expect"})
BACKEND_TIMEOUT_S = 300.0  # a CPU forward pass on a large batch can take a while


@dataclass(frozen=True)
class Routes:
    stable: str | None
    canary: str | None
    percent: int  # the canary's share, 0..100

    def pick(self, draw: float) -> tuple[str, str] | None:
        """(track, url) for a request whose uniform draw in [0, 100) is `draw`."""
        if self.canary and (not self.stable or draw < self.percent):
            return "canary", self.canary
        return ("stable", self.stable) if self.stable else None


def parse_routes(text: str) -> Routes:
    """Raises ValueError on anything but a routes object with loopback http URLs."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("routes must be a JSON object")
    percent = data.get("percent", 0)
    if not isinstance(percent, int) or not 0 <= percent <= 100:
        raise ValueError(f"percent must be an integer 0..100, not {percent!r}")
    urls = [data.get("stable"), data.get("canary")]
    for url in urls:
        if url is not None:
            _check_loopback(url)
    return Routes(urls[0], urls[1], percent)


def read_routes(path: Path) -> Routes | None:
    """The routes in `path`, or None if it is missing or does not parse."""
    try:
        return parse_routes(path.read_text())
    except (OSError, ValueError):
        return None


def write_routes(path: Path, routes: Routes) -> None:
    """Atomically, so the front reads the old routes or the new ones, never half of a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(routes)))
    os.replace(tmp, path)


def _check_loopback(url: object) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(f"a backend must be http://HOST:PORT, not {url!r}")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # another name: never resolved, so never sent to
        loopback = False
    if not loopback:
        raise ValueError(f"a backend must be on loopback, not {host}")


class RouteTable:
    """The routes file, re-read when its identity (inode, mtime, size) changes; a file that
    does not parse keeps the last good routes (and is reported once in the log)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._routes = Routes(None, None, 0)

    def current(self) -> Routes:
        try:
            st = os.stat(self.path)
        except OSError:
            return self._routes
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if key != self._seen:
                self._seen = key
                try:
                    self._routes = parse_routes(self.path.read_text())
                except (OSError, ValueError) as exc:
                    print(f"split: keeping the last routes: {self.path}: {exc}", flush=True)
        return self._routes


def _connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=BACKEND_TIMEOUT_S)
    conn.connect()
    # Our head and body may go out in two writes; without this the body waits ~40 ms.
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


class SplitServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], table: RouteTable) -> None:
        self.table = table
        self.draw = random.Random()
        super().__init__(address, SplitHandler)


class SplitHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive towards the client
    server: SplitServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this the body waits ~40 ms for
        # the client's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.backends: dict[str, http.client.HTTPConnection] = {}

    def finish(self) -> None:
        for conn in self.backends.values():
            conn.close()
        super().finish()

    def do_GET(self) -> None:
        if self.path == "/healthz":
            routes = self.server.table.current()
            self._reply(200, json.dumps({"ok": True, **asdict(routes)}), "application/json")
            return
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def do_PATCH(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def do_OPTIONS(self) -> None:
        self._forward()

    def _forward(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True  # where the next request starts is unknown
            self._reply(400, "ganops split: bad Content-Length or chunked framing\n")
            return
        route = self.server.table.current().pick(self.server.draw.random() * 100)
        if route is None:
            self._reply(503, "ganops split: no model server is routed yet\n")
            return
        track, url = route
        try:
            resp, data = self._send(url, body)
        except (OSError, http.client.HTTPException) as exc:
            why = f"{type(exc).__name__}: {exc}"
            self._reply(502, f"ganops split: the {track} model server {url} is down ({why})\n")
            return
        self.send_response_only(resp.status, resp.reason)
        for name, value in resp.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD" or resp.status in (204, 304):
            length = resp.getheader("Content-Length")  # HEAD: the GET's length; else none
            if length is not None and resp.status != 204:
                self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length or "Content-Length" in self.headers else None

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline().strip():  # trailers, dropped
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, url: str, body: bytes | None) -> tuple[http.client.HTTPResponse, bytes]:
        """One request to `url`'s server on this client connection's own keep-alive
        connection to it; a reused connection the server had closed is retried once."""
        for attempt in (0, 1):
            conn = self.backends.get(url)
            reused = conn is not None
            if conn is None:
                conn = self.backends[url] = _connect(url)
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in HOP_BY_HOP | NOT_FORWARDED:
                        conn.putheader(name, value)
                if "Host" not in self.headers:
                    conn.putheader("Host", urlsplit(url).netloc)
                if body is not None:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
            except (ConnectionError, http.client.RemoteDisconnected):
                conn.close()
                self.backends.pop(url, None)
                if reused and attempt == 0:
                    continue
                raise
            except (OSError, http.client.HTTPException):
                conn.close()
                self.backends.pop(url, None)
                raise
            if resp.will_close:
                conn.close()
                self.backends.pop(url, None)
            return resp, data
        raise AssertionError("unreachable")

    def _reply(self, code: int, text: str, ctype: str = "text/plain; charset=utf-8") -> None:
        data = text.encode()
        self.send_response_only(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line a request would fill the log; errors are in the answers


def _exit_when_routes_vanish(path: Path, server: SplitServer) -> None:
    """The deployer's `stop()` removes the routes file; a front left behind by a killed
    deployer (or a deleted state dir) stops by itself instead of holding its port."""
    missing_since: float | None = None
    while True:
        time.sleep(0.5)
        if path.exists():
            missing_since = None
        elif missing_since is None:
            missing_since = time.monotonic()
        elif time.monotonic() - missing_since > 2.0:
            print(f"split: {path} is gone; stopping", flush=True)
            server.shutdown()
            return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ganops.pipeline.deploy.split")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--routes", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        _check_loopback(f"http://{args.host}:{args.port or 1}")
    except ValueError as exc:
        print(f"split: {exc}", file=sys.stderr)
        return 2
    try:
        server = SplitServer((args.host, args.port), RouteTable(args.routes))
    except OSError as exc:
        print(f"split: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    port = server.server_address[1]
    print(f"split: on http://{args.host}:{port}, routes from {args.routes}", flush=True)
    watcher = threading.Thread(
        target=_exit_when_routes_vanish, args=(args.routes, server), daemon=True
    )
    watcher.start()
    with server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
