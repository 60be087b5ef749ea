"""`PrometheusMetrics` when a drift series vanishes: a real Prometheus with the real rules
(`for:` and `keep_firing_for:` cut to seconds) scrapes a tiny exporter that the test can make
fail. A version whose score stops coming is reported with `has_data=False`, and with data
again once the scrape works again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ganops.bot.adapters.prometheus import PrometheusMetrics
from ganops.bot.ports import DriftAlert
from tests.fakes.prometheus import RULES, PrometheusServer, rules_with_for
from tests.fakes.slack import eventually

pytestmark = pytest.mark.slow


class Exporter:
    """Serves one drift score for cut v3, or answers 503 (a failing scrape) when it is None."""

    def __init__(self) -> None:
        self.score: float | None = 2.0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if exporter.score is None:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = f'gan_input_drift_score{{model="cut",version="3"}} {exporter.score}\n'
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    e = Exporter()
    yield e
    e.server.shutdown()


@pytest.fixture
def prometheus(tmp_path: Path, exporter: Exporter, prometheus_factory: object) -> PrometheusServer:
    rules = rules_with_for(RULES, tmp_path / "rules.yaml", "2s")
    start = prometheus_factory
    assert callable(start)
    server: PrometheusServer = start(targets=[exporter.target], rule_files=[rules])
    return server


def only(metrics: PrometheusMetrics, has_data: bool) -> DriftAlert | None:
    alerts = metrics.firing_drift_alerts()
    if len(alerts) == 1 and alerts[0].has_data == has_data:
        return alerts[0]
    return None


def test_a_vanished_series_is_reported_without_data_and_comes_back(
    exporter: Exporter, prometheus: PrometheusServer
) -> None:
    metrics = PrometheusMetrics(prometheus.url)
    drifting = eventually(lambda: only(metrics, has_data=True), timeout=60)
    assert (drifting.model, drifting.version, drifting.score) == ("cut", "3", 2.0)
    assert drifting.active_since is not None

    exporter.score = None  # the server is down: its scrape fails, the series goes stale
    silent = eventually(lambda: only(metrics, has_data=False), timeout=60)
    assert (silent.model, silent.version) == ("cut", "3")
    # Once GanDriftScoreAbsent has an instance, the silence has a start time.
    since = eventually(lambda: (a := only(metrics, has_data=False)) and a.active_since, 60)
    assert since >= drifting.active_since  # type: ignore[operator]

    exporter.score = 1.5  # back: the same (model, version), with data again
    back = eventually(lambda: only(metrics, has_data=True), timeout=60)
    assert (back.model, back.version, back.score) == ("cut", "3", 1.5)
