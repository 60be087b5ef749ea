"""The HTTP layer of the model server: request handling around `model.serving.predictor.Predictor`.

See `model.serving.server` for the endpoints and their errors; `ganops serve` wires this up.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from model.serving.metrics import CONTENT_TYPE, ServingMetrics
from model.serving.predictor import InputError, Predictor

if TYPE_CHECKING:
    from model.serving.config import ServeConfig

log = logging.getLogger("ganops.serve")


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    batch: int | None = None


class ServerState:
    """What request threads share: the predictor once loaded, metrics, in-flight count."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.metrics = ServingMetrics()
        self.predictor: Predictor | None = None
        self.stopping = False
        self._active = 0
        self._idle = threading.Condition()

    def ready(self, predictor: Predictor) -> None:
        self.metrics.set_model(predictor.model, predictor.version, predictor.monitor is not None)
        self.predictor = predictor

    def enter(self) -> None:
        with self._idle:
            self._active += 1

    def leave(self) -> None:
        with self._idle:
            self._active -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)


def stylize(state: ServerState, content_type: str, body: bytes) -> Reply:
    """Handle one /v1/stylize body. Raises InputError for anything the client must fix."""
    predictor = state.predictor
    if predictor is None:
        raise InputError("the model is still loading", 503)
    if not body:
        raise InputError('empty body: send PNG/JPEG bytes or JSON {"images": [...]}')
    if content_type.split(";")[0].strip().lower() == "application/json":
        blobs = _json_images(body, state.config.max_batch)
        images = []
        for i, blob in enumerate(blobs):
            try:
                images.append(predictor.decode(blob))
            except InputError as exc:
                raise InputError(f"images[{i}]: {exc}", exc.status) from None
        outputs = _predict(state, predictor, images)
        encoded = [base64.b64encode(predictor.encode(o)).decode("ascii") for o in outputs]
        return Reply(200, "application/json", json.dumps({"images": encoded}).encode(), len(blobs))
    outputs = _predict(state, predictor, [predictor.decode(body)])
    return Reply(200, "image/png", predictor.encode(outputs[0]), 1)


def _predict(state: ServerState, predictor: Predictor, images: list[Any]) -> list[Any]:
    prediction = predictor.predict(images)
    if predictor.monitor is not None:
        state.metrics.observe_drift(prediction.drift, predictor.monitor.fill)
    return prediction.outputs


def _json_images(body: bytes, max_batch: int) -> list[bytes]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InputError("bad JSON body") from None
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise InputError('expected JSON {"images": ["<base64 PNG/JPEG>", ...]}')
    if not images:
        raise InputError("no images in the batch")
    if len(images) > max_batch:
        raise InputError(f"too many images: {len(images)} > --max-batch {max_batch}", 413)
    try:
        return [base64.b64decode(i, validate=True) for i in images]
    except (binascii.Error, ValueError):
        raise InputError("an image is not valid base64") from None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ganops-serve"
    timeout = 30  # seconds an idle keep-alive connection may hold its thread
    server: GanServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes; with Nagle on, the second waits for the
        # client's delayed ACK (~40 ms on Linux) on every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        state = self.server.state
        path = self.path.split("?")[0]
        if path == "/healthz":
            self._json(200, {"status": "alive"})
        elif path == "/readyz":
            predictor = state.predictor
            if predictor is None or state.stopping:
                self._json(503, {"ready": False, "reason": "stopping" if predictor else "loading"})
            else:
                self._json(
                    200, {"ready": True, "model": predictor.model, "version": predictor.version}
                )
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE, state.metrics.exposition())
        else:
            self._json(404, {"error": f"no such endpoint: GET {path}"})

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        if path != "/v1/stylize":
            self._discard_body()
            self._json(404, {"error": f"no such endpoint: POST {path}"})
            return
        state = self.server.state
        started = time.perf_counter()
        state.enter()
        try:
            reply = self._stylize(state)
        finally:
            state.leave()
        # Counted before the reply goes out, so a client that has its answer sees it counted.
        state.metrics.observe_request(reply.status, time.perf_counter() - started, reply.batch)
        self._send(reply.status, reply.content_type, reply.body)

    def _stylize(self, state: ServerState) -> Reply:
        try:
            body = self._read_body(state.config.max_bytes)
            return stylize(state, self.headers.get("Content-Type", ""), body)
        except InputError as exc:
            return Reply(exc.status, "application/json", _error(str(exc)))
        except Exception:
            log.exception("stylize failed")
            return Reply(500, "application/json", _error("internal error; see the server log"))

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise InputError("chunked bodies are not supported; send Content-Length", 411)
        raw = self.headers.get("Content-Length")
        if raw is None:
            self.close_connection = True
            raise InputError("Content-Length required", 411)
        try:
            length = int(raw)
        except ValueError:
            self.close_connection = True
            raise InputError("bad Content-Length") from None
        if length < 0 or length > limit:
            self.close_connection = True  # the unread body must not be parsed as a request
            raise InputError(f"body too large: {length} bytes > --max-bytes {limit}", 413)
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            body = b""
        if len(body) < length:
            self.close_connection = True
            raise InputError(f"body ended after {len(body)} of {length} bytes", 408)
        return body

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if 0 <= length <= self.server.state.config.max_bytes:
            self.rfile.read(length)
        else:
            self.close_connection = True

    def _json(self, status: int, doc: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(doc).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        if self.close_connection:
            self._linger()

    def _linger(self, seconds: float = 2.0, limit: int = 64 << 20) -> None:
        """Closing a socket with unread input resets the connection, and the client may then
        lose our answer. So stop writing and drain what the client still sends, briefly."""
        deadline = time.monotonic() + seconds
        drained = 0
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while drained < limit and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.connection.recv(1 << 16)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:  # timeouts and resets: the client is gone or too slow; close anyway
            pass

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class GanServer(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not block exit
    state: ServerState
