"""The model server: `ganops serve --model-uri URI --port N`.

Endpoints:
- `POST /v1/stylize`
  - a PNG or JPEG body (any Content-Type but JSON) -> the stylized image as `image/png`;
  - `Content-Type: application/json` with `{"images": ["<base64 PNG/JPEG>", ...]}` (at most
    `--max-batch`) -> `{"images": ["<base64 PNG>", ...]}`, in the same order, one forward pass.
  Inputs are resized to the model's square input size. Bad input gets a 4xx with
  `{"error": "..."}`: empty body 400, not an image / truncated 400, bad JSON 400, body over
  `--max-bytes`, too many images or more than `--max-pixels` in all 413, no Content-Length
  411, an unsupported format 415. Before the model is loaded: 503.
- The Open Inference Protocol v2 (KServe, Triton), for the model `--model-name` (default
  `ganops-<model>`): `GET /v2` (server metadata), `GET /v2/health/live|ready`,
  `GET /v2/models/{name}[/versions/{v}]` (metadata), `.../ready` (200, or 503 while loading or
  draining), `POST .../infer` with one input of images as BYTES (PNG/JPEG), UINT8 or FP32
  `[N, H, W, 3]`, in JSON or as binary tensor data (`model.serving.oip`). Another name or
  version: 404; another method: 405; errors are `{"error": "..."}`.
- Bounds: at most `--max-inflight` stylize/infer requests at once (more: 503 with
  `Retry-After`), each answered within `--deadline` seconds (else 504).
- `GET /healthz`: 200 while the process runs. `GET /readyz`: 200 only once the model is loaded
  (503 while loading and while shutting down).
- `GET /metrics`: Prometheus exposition (`model.serving.metrics`).

Forward passes run on worker threads, off the event loop; drift features and tests, and the
output statistics (`gan_output_feature`, over the last `--output-window` outputs), run on a
thread of their own behind a bounded queue. The model loads in a background thread, so /healthz answers at once; a model that fails to load
stops the server with exit code 1 and one line saying why. SIGTERM stops accepting, lets
in-flight requests finish (up to 10 s) and exits 0.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ganops.model.asgi_server import bind
from ganops.model.cli.args import Parser, UsageError, fail, positive, tracking_uri_from
from ganops.model.logfmt import FORMATS, configure_logging
from ganops.model.serving.capture import CaptureConfig, make_sink
from ganops.model.serving.config import ServeConfig
from ganops.model.serving.http import GanServer, ServerState
from ganops.model.serving.predictor import Predictor

DEFAULTS = ServeConfig(model_uri="")
# A model name is one URL path segment; KServe's InferenceService names fit (DNS labels).
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


def make_server(config: ServeConfig, state: ServerState | None = None) -> GanServer:
    """Bind the HTTP server (port 0: any free port); call `serve_forever()` to run it.

    Raises:
        OSError: the address cannot be bound.
    """
    from ganops.model.serving.app import create_app

    state = state or ServerState(config)
    return GanServer(create_app(state), bind(config.host, config.port), state)


def load_predictor(config: ServeConfig) -> Predictor:
    """Load the bundle named by `config.model_uri` and warm it up.

    Raises:
        model.bundle.BundleError, ValueError, OSError: with a one-line message.
    """
    import torch

    from ganops.model.bundle import load_bundle

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    bundle = load_bundle(config.model_uri, device=device, tracking_uri=config.tracking_uri)
    reference = None
    if config.drift_reference is not None:
        reference = json.loads(config.drift_reference.read_text())
    predictor = Predictor.from_bundle(
        bundle, window=config.window, drift_every=config.drift_every, drift_reference=reference
    )
    if config.model_version:
        predictor.version = config.model_version
    predictor.warmup()
    predictor.capture = make_sink(config.capture, model=bundle.model, version=predictor.version)
    return predictor


def build_parser(env: Mapping[str, str]) -> Parser:
    """`--model-uri` defaults to GANOPS_MODEL_URI, so a container image can serve with no
    arguments."""
    d = DEFAULTS
    parser = Parser(prog="ganops serve", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add(
        "--model-uri",
        default=env.get("GANOPS_MODEL_URI"),
        help="bundle dir, checkpoint or models:/ganops-MODEL@ALIAS (default: $GANOPS_MODEL_URI)",
    )
    add(
        "--model-name",
        default=env.get("GANOPS_MODEL_NAME") or None,
        help="the OIP v2 model name, e.g. the KServe InferenceService's "
        "(default: $GANOPS_MODEL_NAME or ganops-MODEL)",
    )
    add(
        "--model-version",
        default=env.get("GANOPS_MODEL_VERSION") or None,
        help="the version to report (metrics, OIP) (default: $GANOPS_MODEL_VERSION or the "
        "bundle's)",
    )
    add(
        "--port",
        type=int,
        default=d.port,
        help="TCP port, 0..65535; 0 picks a free one (default: %(default)s)",
    )
    add(
        "--host",
        default=env.get("GANOPS_SERVE_HOST", d.host),
        help="address to bind; 0.0.0.0 in a container (default: $GANOPS_SERVE_HOST or %(default)s)",
    )
    add(
        "--window",
        type=positive(int),
        help="drift window in images, > 0; recalibrates the threshold (default: the reference's)",
    )
    add(
        "--max-bytes",
        type=positive(int),
        default=d.max_bytes,
        help="largest request body in bytes, > 0 (default: %(default)s)",
    )
    add(
        "--max-batch",
        type=positive(int),
        default=d.max_batch,
        help="most images per request, > 0 (default: %(default)s)",
    )
    add(
        "--max-pixels",
        type=positive(int),
        default=d.max_pixels,
        help="most pixels per request, summed over the batch, > 0 (default: %(default)s)",
    )
    add(
        "--max-inflight",
        type=positive(int),
        default=d.max_inflight,
        help="requests in flight at once, > 0; more get 503 + Retry-After (default: %(default)s)",
    )
    add(
        "--deadline",
        type=positive(float),
        default=d.deadline,
        help="seconds a request may take, > 0; then 504 (default: %(default)s)",
    )
    add(
        "--drift-every",
        type=positive(int),
        default=d.drift_every,
        help="images between drift evaluations, > 0 (default: %(default)s)",
    )
    add(
        "--drift-queue",
        type=positive(int),
        default=d.drift_queue,
        help="batches waiting for drift evaluation, > 0; more are dropped (default: %(default)s)",
    )
    add(
        "--output-window",
        type=positive(int),
        default=d.output_window,
        help="output images behind gan_output_feature's means, > 0 (default: %(default)s)",
    )
    add("--device", default=d.device, help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    add("--tracking-uri", help="MLflow URI for models:/ (default: $MLFLOW_TRACKING_URI)")
    add(
        "--drift-reference",
        type=Path,
        help="drift reference JSON overriding the bundle's (default: the bundle's)",
    )
    add(
        "--log-format",
        choices=FORMATS,
        default=d.log_format,
        help="text or json, one object a line (default: %(default)s)",
    )
    return parser


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> ServeConfig:
    """The CLI's config. Raises model.errors.UsageError on bad arguments."""
    parser = build_parser(env)
    add_capture_arguments(parser, env)
    args = parser.parse_args(list(argv))
    if not args.model_uri:
        raise UsageError("--model-uri is required (or set GANOPS_MODEL_URI)")
    if args.model_name is not None and not MODEL_NAME.match(args.model_name):
        raise UsageError(
            f"--model-name {args.model_name!r}: use letters, digits, '.', '_' and '-' only"
        )
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    args.tracking_uri = tracking_uri_from(args.tracking_uri, env)
    values = {k: v for k, v in vars(args).items() if v is not None}
    try:
        capture = CaptureConfig(
            rate=values.pop("capture_rate"),
            uri=values.pop("capture_uri", None),
            days=values.pop("capture_days"),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return ServeConfig(capture=capture, **values)


def add_capture_arguments(parser: Parser, env: Mapping[str, str]) -> None:
    """Input capture (`model.serving.capture`); the flags default to GANOPS_CAPTURE_*."""
    try:
        rate = float(env.get("GANOPS_CAPTURE_RATE") or 0.0)
        days = float(env.get("GANOPS_CAPTURE_DAYS") or CaptureConfig.days)
    except ValueError:
        raise UsageError("GANOPS_CAPTURE_RATE and GANOPS_CAPTURE_DAYS must be numbers") from None
    parser.add_argument(
        "--capture-rate",
        type=float,
        default=rate,
        help="share of inputs kept, 0..1; 0: off (default: $GANOPS_CAPTURE_RATE or 0)",
    )
    parser.add_argument(
        "--capture-uri",
        default=env.get("GANOPS_CAPTURE_URI") or None,
        help="folder or fsspec URL for captured inputs (default: $GANOPS_CAPTURE_URI)",
    )
    parser.add_argument(
        "--capture-days",
        type=float,
        default=days,
        help="days captured inputs are kept (default: $GANOPS_CAPTURE_DAYS or %(default)s)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`ganops serve`: exit 0 after SIGTERM/SIGINT, 1 if the model fails to load, 2 on usage."""
    try:
        config = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    except UsageError as exc:
        return fail("serve", str(exc))
    configure_logging(fmt=config.log_format)
    # uvicorn's start/stop lines would follow our one-line failure reason, which a deployer
    # reads from the log's end; ours say the same (listening, ready).
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    try:
        server = make_server(config)
    except OSError as exc:
        print(f"ganops serve: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 2
    state, failed = server.state, threading.Event()
    port = server.server_address[1]
    print(
        f"ganops serve: listening on http://{config.host}:{port} (loading {config.model_uri})",
        flush=True,
    )

    def stop(*_: Any) -> None:
        server.stop()  # uvicorn stops accepting and lets in-flight requests finish

    def load() -> None:
        try:
            state.ready(load_predictor(config))
        except Exception as exc:  # any load failure ends the process with one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"ganops serve: cannot load {config.model_uri}: {first}", file=sys.stderr)
            failed.set()
            stop()
            return
        p = state.predictor
        assert p is not None
        drift = f"drift window {p.monitor.reference.window}" if p.monitor else "no drift reference"
        print(f"ganops serve: ready: {p.model} v{p.version} on {p.device} ({drift})", flush=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=load, name="load-model", daemon=True).start()
    server.serve_forever()
    state.wait_idle(timeout=10.0)  # work already on the worker threads
    server.server_close()
    if state.predictor is not None and state.predictor.capture is not None:
        state.predictor.capture.close()
    return 1 if failed.is_set() else 0
