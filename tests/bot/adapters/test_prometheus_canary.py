"""`PrometheusMetrics.compare_versions` against a real Prometheus:

- scraping three processes that expose the model server's real metrics with traffic of a
  known shape: two replicas of v1 (no errors, 30 ms) and one of v2 (every 4th request 500,
  300 ms, drifting, blacked-out outputs). The numbers must come out per version although the
  request counter and the latency histogram carry no version label;
- scraping two real `ganops serve` processes, a healthy v1 and a v2 whose weights are NaN (the
  demo's broken challenger): v2's every request is a 500, and only v1 has output statistics.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ganops.bot.adapters.prometheus import PrometheusMetrics
from ganops.bot.canary import CanaryThresholds, judge
from ganops.bot.ports import UpstreamError
from tests.fakes.prometheus import REPO, PrometheusServer, free_port, terminate
from tests.fakes.serving import make_bundle, png_bytes, post, scenes, start_server

RATE = 20.0  # requests a second, each exporter
WINDOW_S = 6.0


def exporter(version: str, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    """An exporter on a port it binds itself (0) and prints: one picked here could be taken
    by a test beside this one before the exporter binds it."""
    cmd = [sys.executable, "-m", "tests.fakes.serving_exporter", "--port", "0"]
    cmd += ["--version", version, "--rate", str(RATE), *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().split()
    assert line[:1] == ["serving"], line
    return proc, int(line[1])


@pytest.fixture
def targets() -> Iterator[list[int]]:
    outputs = json.dumps({"brightness": 0.4, "noise": 0.01})
    blacked = json.dumps({"brightness": 0.02, "noise": 0.01})  # collapsed outputs
    started = [
        exporter("1", "--latency", "0.03", "--drift", "0.2", "--outputs", outputs),
        exporter("1", "--latency", "0.03", "--drift", "0.4", "--outputs", outputs),
        exporter("2", "--latency", "0.3", "--error-every", "4", "--drift", "1.7",
                 "--outputs", blacked),
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
    assert v2.output_means == {"brightness": 0.02, "noise": 0.01}
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


def nan_bundle(source: Path, out_dir: Path, version: str) -> Path:
    """`source`'s bundle with every generator weight NaN: it loads and warms up, then fails."""
    import torch

    from ganops.model.bundle import load_bundle, save_bundle

    bundle = load_bundle(source)
    with torch.no_grad():
        for parameter in bundle.generator.parameters():
            parameter.fill_(float("nan"))
    meta = {"version": version, "data_digest": "sha256:test"}
    return save_bundle(
        out_dir, bundle.generator, bundle.net, meta, drift_reference=bundle.drift_reference
    )


def scalar(prometheus: PrometheusServer, promql: str) -> float | None:
    result = prometheus.query(promql)
    return float(result[0]["value"][1]) if result else None


@pytest.mark.slow
def test_a_nan_challenger_beside_a_real_stable_server(
    tmp_path: Path, prometheus_factory: Callable[..., PrometheusServer]
) -> None:
    stable = make_bundle(tmp_path / "v1", version="1")
    servers = [start_server(stable), start_server(nan_bundle(stable, tmp_path / "v2", "2"))]
    try:
        for server in servers:
            server.wait_ready()
        prometheus = prometheus_factory(targets=[f"127.0.0.1:{s.port}" for s in servers])
        prometheus.wait_for(
            'count(gan_model_info{model="cut"})', lambda r: bool(r) and r[0]["value"][1] == "2"
        )
        n = 24
        for image in scenes(n, seed=1):
            body = png_bytes(image)
            assert post(f"{servers[0].url}/v1/stylize", body)[0] == 200
            status, answer = post(f"{servers[1].url}/v1/stylize", body)
            assert status == 500, answer
        # Scraped: every request, and v1's output statistics (computed on its worker thread).
        prometheus.wait_for(
            "sum(gan_requests_total)", lambda r: bool(r) and r[0]["value"][1] == str(2 * n)
        )
        prometheus.wait_for(
            'count(gan_output_feature{version="1"})', lambda r: bool(r) and r[0]["value"][1] == "8"
        )
        # `increase` extrapolates to the window's end by the series' own slope, so a series
        # only seconds old overshoots by up to a scrape interval over its age: let it age.
        time.sleep(6.0)
        stats = PrometheusMetrics(prometheus.url).compare_versions(
            model="cut", versions=["1", "2"], window_s=60
        )
    finally:
        for server in servers:
            server.stop()
    v1, v2 = stats["1"], stats["2"]
    # The series exist at 0 before the first request, so `increase` misses none of them.
    assert v1.requests == pytest.approx(n, rel=0.2)
    assert v2.requests == pytest.approx(n, rel=0.2)
    assert (v1.error_rate, v2.error_rate) == (0.0, 1.0)
    assert v1.p95_latency_s is not None
    assert 0 < v1.p95_latency_s < 10
    assert v2.p95_latency_s is not None
    assert set(v1.output_means) == {
        "brightness", "contrast", "mean_r", "mean_g", "mean_b", "saturation", "sharpness", "noise"
    }  # fmt: skip
    assert all(0.0 <= v <= 1.0 for v in v1.output_means.values())
    assert v2.output_means == {}  # failed requests' outputs are not statistics
    verdict = judge(canary=v2, stable=v1, thresholds=CanaryThresholds())
    assert verdict.outcome == "fail"
    assert verdict.reasons[0].startswith("error rate 100.0% vs 0.0% on v2")
    assert "no output statistics for v2: outputs not compared" in verdict.notes
