"""A process that exposes the model server's metrics (the real `ServingMetrics`) for one
version, with traffic of a known shape: `--rate` requests a second, every `--error-every`-th
answered 500, each taking `--latency` seconds. Cheaper than a `ganops serve` with a model
(no torch), and unlike it, its error rate and latency are exactly what the test says.

    python -m tests.fakes.serving_exporter --port 0 --version 2 --error-every 4 --latency 0.3
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Sequence

from prometheus_client import start_http_server

from ganops.model.drift_stats import DriftScore
from ganops.model.serving.metrics import ServingMetrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--model", default="cut")
    parser.add_argument("--version", required=True)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--error-every", type=int, default=0, help="0: no errors")
    parser.add_argument("--latency", type=float, default=0.03)
    parser.add_argument("--drift", type=float, help="the drift score; none: no drift series")
    parser.add_argument("--outputs", default="{}", help="JSON feature -> output mean")
    args = parser.parse_args(argv)

    metrics = ServingMetrics()
    metrics.set_model(args.model, args.version, drift=args.drift is not None)
    if args.drift is not None:
        score = DriftScore(args.drift, 0.0, args.drift, {}, 1.0, True)
        metrics.observe_drift(score, 1.0)
    metrics.observe_outputs(json.loads(args.outputs))
    server, thread = start_http_server(args.port, addr="127.0.0.1", registry=metrics.registry)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # The bound port, for the test to read: a port it picked itself could be taken meanwhile.
    print(f"serving {server.server_port}", flush=True)
    sent = 0
    while not stop.wait(1.0 / args.rate):
        sent += 1
        failed = args.error_every > 0 and sent % args.error_every == 0
        metrics.observe_request(500 if failed else 200, args.latency, 1)
    server.shutdown()
    thread.join(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
