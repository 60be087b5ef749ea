"""`PrometheusMetrics` against a real Prometheus scraping a real `ganops serve`, and against
addresses where no Prometheus answers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ganops.bot.adapters.prometheus import PrometheusMetrics
from ganops.bot.ports import DriftAlert, UpstreamError
from tests.bot.drift.stack import (
    ALERT,
    FOR_S,
    MODEL,
    SCORE,
    SELECTOR,
    VERSION,
    DriftStack,
    calm,
    drift,
    shared_stack,
)
from tests.fakes.prometheus import free_port


@pytest.fixture(scope="module")
def drift_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DriftStack]:
    yield from shared_stack(request, tmp_path_factory)


def firing(metrics: PrometheusMetrics, timeout: float = 30.0) -> list[DriftAlert]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alerts = metrics.firing_drift_alerts()
        if alerts:
            return alerts
        time.sleep(0.5)
    raise AssertionError(f"GanInputDrift never fired within {timeout:.0f} s")


@pytest.mark.slow
def test_drift_free_traffic_fires_nothing(drift_stack: DriftStack) -> None:
    calm(drift_stack, seed=1)
    time.sleep(FOR_S + 3.0)  # longer than `for:` plus a scrape and a rule evaluation
    # Over that whole stretch: never a pending or firing alert, the score always under 1.
    window = f"[{FOR_S + 2}s]"
    assert drift_stack.prometheus.query(f"count_over_time({ALERT}{window})") == []
    [peak] = drift_stack.prometheus.query(f"max_over_time({SCORE}{window})")
    assert float(peak["value"][1]) < 1.0
    assert PrometheusMetrics(drift_stack.prometheus.url).firing_drift_alerts() == []


@pytest.mark.slow
def test_shifted_traffic_fires_with_the_version_score_and_features(drift_stack: DriftStack) -> None:
    drift(drift_stack, seed=2)
    started = time.time()
    metrics = PrometheusMetrics(drift_stack.prometheus.url, timeout_s=2.5)  # sent as "2500ms"
    [alert] = firing(metrics)

    assert (alert.model, alert.version) == (MODEL, VERSION)
    assert alert.score > 1.0
    assert alert.score == pytest.approx(drift_stack.score())  # no traffic since: a steady gauge
    assert alert.features["brightness"] > 1.0
    assert set(alert.features) >= {"brightness", "contrast"}
    assert alert.score >= max(alert.features.values()) - 1e-9  # the score is the worst test
    per_feature = drift_stack.prometheus.query(
        f'gan_input_drift_feature_score{{{SELECTOR},feature="contrast"}}'
    )
    assert alert.features["contrast"] == pytest.approx(float(per_feature[0]["value"][1]))
    assert alert.active_since is not None
    assert started - 60 < alert.active_since <= time.time()


@pytest.mark.slow
def test_score_history_returns_the_samples(drift_stack: DriftStack) -> None:
    drift(drift_stack, seed=3)
    time.sleep(2.0)  # a couple more scrapes
    metrics = PrometheusMetrics(drift_stack.prometheus.url)
    history = metrics.score_history(MODEL, VERSION, hours=0.25)
    assert history, "no samples"
    times = [t for t, _ in history]
    assert times == sorted(times)
    assert time.time() - 15 * 60 - 30 < times[0] <= times[-1] <= time.time() + 1
    assert history[-1][1] == pytest.approx(drift_stack.score())
    assert all(v >= 0 for _, v in history)
    assert metrics.score_history(MODEL, "no-such-version", hours=0.25) == []


def test_a_dead_address_is_a_short_upstream_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    metrics = PrometheusMetrics(url)
    started = time.monotonic()
    with pytest.raises(UpstreamError) as alerts_error:
        metrics.firing_drift_alerts()
    with pytest.raises(UpstreamError) as history_error:
        metrics.score_history(MODEL, VERSION)
    assert time.monotonic() - started < 5.0  # no long retry ladder inside the watcher's tick
    for error in (alerts_error, history_error):
        message = str(error.value)
        assert message.startswith(f"Prometheus at {url} did not answer: cannot connect")
        assert "\n" not in message
        assert "HTTPConnectionPool" not in message


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as sock:  # the kernel accepts connections; nobody ever replies
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(UpstreamError, match=r"did not answer: no answer within 0.3 s"):
            PrometheusMetrics(url, timeout_s=0.3).firing_drift_alerts()


@pytest.mark.slow
def test_a_bad_query_is_refused_with_prometheus_reason(drift_stack: DriftStack) -> None:
    metrics = PrometheusMetrics(drift_stack.prometheus.url, alert='Gan"Broken')
    with pytest.raises(UpstreamError, match="refused the query: HTTP Status Code 400") as error:
        metrics.firing_drift_alerts()
    assert "bad_data" in str(error.value)


def test_something_else_at_the_url_is_named(tmp_path: Path) -> None:
    from http.server import HTTPServer, SimpleHTTPRequestHandler
    from threading import Thread

    class Html(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>not prometheus</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Html)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(UpstreamError, match="not Prometheus's JSON API"):
            PrometheusMetrics(url).firing_drift_alerts()
    finally:
        server.shutdown()
        server.server_close()
