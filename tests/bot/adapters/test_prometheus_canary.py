"""`PrometheusMetrics.compare_versions` against a real Prometheus scraping three processes that
expose the model server's real metrics: two replicas of v1 (no errors, 30 ms) and one of v2
(every 4th request 500, 300 ms, drifting, brighter outputs). The numbers must come out per
version although the request counter and the latency histogram carry no version label."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from ganops.bot.adapters.prometheus import PrometheusMetrics
from ganops.bot.canary import CanaryThresholds, judge
from ganops.bot.ports import UpstreamError
from tests.fakes.prometheus import REPO, PrometheusServer, free_port, terminate

RATE = 20.0  # requests a second, each exporter
WINDOW_S = 6.0


def exporter(version: str, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [sys.executable, "-m", "tests.fakes.serving_exporter", "--port", str(port)]
    cmd += ["--version", version, "--rate", str(RATE), *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL), port


@pytest.fixture
def targets() -> Iterator[list[int]]:
    outputs = json.dumps({"brightness": 0.4, "noise": 0.01})
    brighter = json.dumps({"brightness": 0.6, "noise": 0.01})
    started = [
        exporter("1", "--latency", "0.03", "--drift", "0.2", "--outputs", outputs),
        exporter("1", "--latency", "0.03", "--drift", "0.4", "--outputs", outputs),
        exporter("2", "--latency", "0.3", "--error-every", "4", "--drift", "1.7",
                 "--outputs", brighter),
    ]  # fmt: skip
    yield [port for _, port in started]
    for process, _ in started:
        terminate(process)


@pytest.mark.slow
def test_versions_are_told_apart_by_the_model_info_join(
    targets: list[int], prometheus_factory: Callable[..., PrometheusServer]
) -> None:
    prometheus = prometheus_factory(targets=[f"127.0.0.1:{p}" for p in targets])
    # Every target scraped twice at least, then a full window of traffic behind them.
    prometheus.wait_for("sum(up)", lambda r: bool(r) and r[0]["value"][1] == "3")
    prometheus.wait_for(
        "count(count_over_time(gan_model_info[1m]) >= 2)",
        lambda r: bool(r) and r[0]["value"][1] == "3",
    )
    time.sleep(WINDOW_S)
    metrics = PrometheusMetrics(prometheus.url)
    stats = metrics.compare_versions(model="cut", versions=["1", "2", "3"], window_s=WINDOW_S)

    v1, v2, v3 = stats["1"], stats["2"], stats["3"]
    # Two replicas of v1, one of v2; `increase` extrapolates, hence the tolerance.
    assert v1.requests == pytest.approx(2 * RATE * WINDOW_S, rel=0.25)
    assert v2.requests == pytest.approx(RATE * WINDOW_S, rel=0.25)
    assert (v1.errors, v1.error_rate) == (0.0, 0.0)
    assert v2.error_rate == pytest.approx(0.25, abs=0.04)
    # All of v1's requests in the (25 ms, 50 ms] bucket, v2's in (250 ms, 500 ms]:
    # histogram_quantile interpolates 95 % of the way through each.
    assert v1.p95_latency_s == pytest.approx(0.025 + 0.95 * 0.025)
    assert v2.p95_latency_s == pytest.approx(0.25 + 0.95 * 0.25)
    assert (v1.drift_score, v2.drift_score) == (0.4, 1.7)  # the replicas' max
    assert v1.output_means == {"brightness": 0.4, "noise": 0.01}
    assert v2.output_means == {"brightness": 0.6, "noise": 0.01}
    # A version nobody serves: no traffic, nothing measured, not an error.
    assert (v3.requests, v3.error_rate, v3.p95_latency_s, v3.drift_score) == (0, None, None, None)
    assert v3.output_means == {}

    verdict = judge(canary=v2, stable=v1, thresholds=CanaryThresholds())
    assert verdict.outcome == "fail"
    assert [r.ok for r in verdict.rows] == [False, False, False, False]
    assert judge(canary=v1, stable=v1, thresholds=CanaryThresholds()).outcome == "pass"


def test_an_unreachable_prometheus_is_an_upstream_error() -> None:
    metrics = PrometheusMetrics(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    with pytest.raises(UpstreamError, match="cannot connect"):
        metrics.compare_versions(model="cut", versions=["1"], window_s=60)
    with pytest.raises(ValueError, match="positive number of seconds"):
        metrics.compare_versions(model="cut", versions=["1"], window_s=0)
