"""The HTTP server around `model.serving.app`: uvicorn on a socket bound up front, and the
state request handlers share (the predictor once loaded, metrics, in-flight slots, workers).

See `model.serving.server` for the endpoints and their errors; `ganops serve` wires this up.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from ganops.model.asgi_server import AsgiServer
from ganops.model.registry import registered_name
from ganops.model.serving.metrics import ServingMetrics
from ganops.model.serving.protocol import Limits

if TYPE_CHECKING:
    from ganops.model.serving.config import ServeConfig
    from ganops.model.serving.drift_worker import DriftWorker
    from ganops.model.serving.predictor import Predictor


class Slots:
    """A fixed number of requests in flight; `acquire` never waits (a full server says 503)."""

    def __init__(self, size: int, on_change: Callable[[int], None] | None = None) -> None:
        self.size = size
        self.used = 0
        self._on_change = on_change
        self._cond = threading.Condition()

    def acquire(self) -> bool:
        with self._cond:
            if self.used >= self.size:
                return False
            self.used += 1
            self._changed()
            return True

    def release(self) -> None:
        with self._cond:
            self.used -= 1
            self._changed()
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.used == 0, timeout)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.used)


class ServerState:
    """What the request handlers share."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.metrics = ServingMetrics()
        self.predictor: Predictor | None = None
        self.stopping = False
        self.limits = Limits(
            max_batch=config.max_batch, max_pixels=config.max_pixels, max_bytes=config.max_bytes
        )
        self.slots = Slots(config.max_inflight, self.metrics.inflight.set)
        # One thread per slot: a request that holds a slot never waits for a thread.
        self.pool = ThreadPoolExecutor(config.max_inflight, thread_name_prefix="infer")
        self.drift_worker: DriftWorker | None = None

    def ready(self, predictor: Predictor) -> None:
        from ganops.model.serving.drift_worker import DriftWorker
        from ganops.model.serving.output_stats import OutputStats

        self.metrics.set_model(predictor.model, predictor.version, predictor.monitor is not None)
        # Always: the output statistics need no drift reference.
        self.drift_worker = DriftWorker(
            predictor.monitor,
            on_score=self.metrics.observe_drift,
            on_drop=self.metrics.drift_dropped.inc,
            max_queued=self.config.drift_queue,
            outputs=OutputStats(self.config.output_window),
            on_outputs=self.metrics.observe_outputs,
            on_output_drop=self.metrics.output_dropped.inc,
        )
        self.drift_worker.start()
        predictor.output_sink = self.drift_worker.submit_outputs
        self.predictor = predictor

    def model_name(self) -> str | None:
        """The OIP v2 name this server answers to: `--model-name`, else `ganops-<model>` once
        the model is loaded (None before: the model is not known yet)."""
        if self.config.model_name:
            return self.config.model_name
        if self.predictor is None:
            return None
        return registered_name(self.predictor.model)

    def finished(self, future: Future[Any] | asyncio.Future[Any]) -> None:
        """A worker thread is done: free its slot (its result may have gone unread)."""
        self.slots.release()
        if not future.cancelled():
            future.exception()

    def wait_idle(self, timeout: float) -> bool:
        return self.slots.wait_idle(timeout)

    def close(self) -> None:
        self.pool.shutdown(wait=False)
        if self.drift_worker is not None:
            self.drift_worker.stop()


class _HalfCloseH11(H11Protocol):
    """h11, but a client that half-closes (sends EOF) before it has our answer still gets it:
    uvicorn would drop the connection at once, and the client would never learn why (e.g. the
    408 naming the bytes received when the body ends short of its Content-Length)."""

    _eof = False

    def eof_received(self) -> bool:  # type: ignore[override]  # asyncio.Protocol allows bool
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return False  # nothing pending: close as usual
        self._eof = True
        if cycle.more_body:
            cycle.more_body = False  # the handler sees the body end short
            cycle.message_event.set()
        return True  # keep the transport open to write the answer

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._eof:
            self.transport.close()


class GanServer(AsgiServer):
    """The model server: `create_app(state)` on uvicorn, h11 with answers after a half-close."""

    def __init__(self, app: Any, sock: socket.socket, state: ServerState) -> None:
        super().__init__(app, sock, http=_HalfCloseH11, graceful_s=10.0)
        self.state = state

    def stop(self) -> None:
        self.state.stopping = True  # /readyz says so while in-flight requests finish
        super().stop()

    def server_close(self) -> None:
        super().server_close()
        self.state.close()
