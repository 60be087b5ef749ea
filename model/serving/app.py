"""The model server's ASGI app (Starlette): the endpoints of `model.serving.server`.

Kept thin: the event loop only reads bodies and routes; decoding, the forward pass and encoding
run on the state's worker threads (`model.serving.protocol`), so a slow batch never stalls
health checks or /metrics.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ganops.model.serving import oip, protocol
from ganops.model.serving.http import ServerState
from ganops.model.serving.metrics import CONTENT_TYPE
from ganops.model.serving.predictor import InputError, ModelError, Predictor
from ganops.model.serving.protocol import Reply, error_reply

log = logging.getLogger("ganops.serve")

Work = Callable[[Predictor, bytes], Reply]


def create_app(state: ServerState) -> Starlette:
    async def healthz(_: Request) -> Response:
        return _json({"status": "alive"})

    async def readyz(_: Request) -> Response:
        predictor = state.predictor
        if predictor is None or state.stopping:
            reason = "stopping" if predictor else "loading"
            return _json({"ready": False, "reason": reason}, 503)
        return _json({"ready": True, "model": predictor.model, "version": predictor.version})

    async def metrics(_: Request) -> Response:
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)

    async def v1_stylize(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        return await bounded(
            state, request, lambda p, body: protocol.v1_work(p, state.limits, content_type, body)
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        where = f"{request.method} {request.url.path}"
        if status == 404:
            return _json({"error": f"no such endpoint: {where}"}, 404)
        if status == 405 and isinstance(exc, HTTPException):
            allow = (exc.headers or {}).get("Allow", "")
            message = f"method not allowed: {where}; allowed: {allow}"
            return _json({"error": message}, 405, {"Allow": allow})
        return _json({"error": str(exc)}, status)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/stylize", v1_stylize, methods=["POST"]),
        *v2_routes(state),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def v2_routes(state: ServerState) -> list[Route]:
    """The Open Inference Protocol v2 endpoints (`docs/serving.md`)."""

    async def live(_: Request) -> Response:
        return _json({"live": True})

    async def ready(_: Request) -> Response:
        ok = state.predictor is not None and not state.stopping
        return _json({"ready": ok}, 200 if ok else 503)

    async def server_metadata(_: Request) -> Response:
        return _json(oip.server_metadata(version))

    async def model_metadata(request: Request) -> Response:
        name = request.path_params["name"]
        predictor, refusal = _model(state, name, request.path_params.get("version"))
        if refusal is not None:
            return _response(refusal)
        assert predictor is not None
        doc = oip.metadata(name=name, version=predictor.version, image_size=predictor.image_size)
        return _json(doc)

    async def model_ready(request: Request) -> Response:
        # The status code is the answer (stock clients read only it): 503 while loading or
        # draining, so a load balancer and tritonclient's is_model_ready() both see "no".
        name = request.path_params["name"]
        _, refusal = _model(state, name, request.path_params.get("version"))
        if refusal is not None and refusal.status != 503:
            return _response(refusal)
        if refusal is not None or state.stopping:
            reason = "stopping" if refusal is None else "loading"
            return _json({"name": name, "ready": False, "reason": reason}, 503)
        return _json({"name": name, "ready": True})

    async def infer(request: Request) -> Response:
        name = request.path_params["name"]
        _, refusal = _model(state, name, request.path_params.get("version"))
        if refusal is not None:
            return _response(refusal)
        header_length = request.headers.get(oip.HEADER)
        encoding = request.headers.get("content-encoding", "")

        def work(predictor: Predictor, body: bytes) -> Reply:
            return protocol.v2_work(
                predictor,
                state.limits,
                name=name,
                body=body,
                header_length=header_length,
                encoding=encoding,
            )

        return await bounded(state, request, work)

    version = _package_version()
    routes = [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
    ]
    model = "/v2/models/{name}"
    for base in (model, model + "/versions/{version}"):
        routes += [
            Route(base, model_metadata, methods=["GET"]),
            Route(base + "/ready", model_ready, methods=["GET"]),
            Route(base + "/infer", infer, methods=["POST"]),
        ]
    return routes


def _model(
    state: ServerState, name: str, version: str | None
) -> tuple[Predictor | None, Reply | None]:
    """The predictor serving `name` (and `version`, when the path names one), or the refusal:
    404 for another name or version, 503 while loading."""
    served = state.model_name()
    if served is not None and name != served:
        return None, error_reply(404, f"no model {name!r}; this server serves {served!r}")
    predictor = state.predictor
    if predictor is None:
        return None, error_reply(503, "the model is still loading")
    if version is not None and version != predictor.version:
        message = f"model {name!r} has no version {version!r}; it serves {predictor.version!r}"
        return None, error_reply(404, message)
    return predictor, None


def _package_version() -> str:
    try:
        return importlib.metadata.version("ganops")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def bounded(state: ServerState, request: Request, work: Work) -> Response:
    """Run `work` on the body within the in-flight limit and the deadline; count the request."""
    started = time.perf_counter()
    reply = await _bounded(state, request, work, started)
    # Counted before the reply goes out, so a client that has its answer sees it counted.
    state.metrics.observe_request(reply.status, time.perf_counter() - started, reply.batch)
    return _response(reply)


async def _bounded(state: ServerState, request: Request, work: Work, started: float) -> Reply:
    config = state.config
    if not state.slots.acquire():
        state.metrics.rejected.inc()
        message = f"busy: {config.max_inflight} requests in flight; retry shortly"
        return error_reply(503, message, {"Retry-After": "1"})
    held = True  # until the worker thread takes the slot over
    try:
        predictor = state.predictor
        if predictor is None:
            raise InputError("the model is still loading", 503)
        deadline = started + config.deadline
        body = await asyncio.wait_for(_read_body(request, config.max_bytes), _left(deadline))
        future = asyncio.get_running_loop().run_in_executor(state.pool, work, predictor, body)
        # The slot is freed when the thread ends, not at the deadline: a forward pass cannot be
        # cancelled, and freeing early would let timed-out work pile up past the limit.
        future.add_done_callback(lambda f: state.finished(f))
        held = False
        return await asyncio.wait_for(asyncio.shield(future), _left(deadline))
    except TimeoutError:
        state.metrics.timeouts.inc()
        return error_reply(504, f"deadline of {config.deadline:g} s exceeded (--deadline)")
    except InputError as exc:
        # After a short body the connection is out of step: close it once answered.
        close = {"Connection": "close"} if exc.status == 408 else None
        return error_reply(exc.status, str(exc), close)
    except ModelError as exc:  # the model's fault, said as such; no traceback to add
        log.error("request failed: %s", exc)
        return error_reply(500, str(exc))
    except Exception:
        log.exception("request failed")
        return error_reply(500, "internal error; see the server log")
    finally:
        if held:
            state.slots.release()


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.perf_counter())


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused from its headers when it cannot be accepted (before reading it)."""
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        raise InputError("chunked bodies are not supported; send Content-Length", 411)
    raw = request.headers.get("content-length")
    if raw is None:
        raise InputError("Content-Length required", 411)
    try:
        length = int(raw)
    except ValueError:
        raise InputError("bad Content-Length") from None
    if length < 0 or length > limit:
        raise InputError(f"body too large: {length} bytes > --max-bytes {limit}", 413)
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            chunks.append(chunk)
            received += len(chunk)
    except ClientDisconnect:
        pass
    if received < length:
        raise InputError(f"body ended after {received} of {length} bytes", 408)
    return b"".join(chunks)


def _json(
    doc: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    # json.dumps' default separators: the bytes the endpoints have always answered with.
    return Response(json.dumps(doc).encode(), status, headers, media_type="application/json")


def _response(reply: Reply) -> Response:
    return Response(reply.body, reply.status, reply.headers, media_type=reply.content_type)
