"""A real Prometheus scraping a real `ganops serve`: no alarm on drift-free traffic, the
GanInputDrift alert (the rules with a 5 s `for:`) firing on shifted traffic."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_api_client import PrometheusConnect

from ganops.model.data import DriftKnobs, apply_knobs
from tests.fakes.prometheus import RULES, PrometheusServer, rules_with_for
from tests.fakes.serving import ServerProcess, make_bundle, scenes, start_server, stylize_batch

pytestmark = pytest.mark.slow

WINDOW = 32
SHORT_FOR = 5.0  # seconds; the production rules say 2m
SELECTOR = 'model="cut",version="7"'


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    bundle = make_bundle(tmp_path / "bundle", version="7", window=WINDOW)
    process = start_server(bundle)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def send(server: ServerProcess, images: np.ndarray, batch: int = 8) -> None:
    for start in range(0, len(images), batch):
        stylize_batch(server.url, images[start : start + batch])


def value(prom: PrometheusConnect, promql: str) -> float | None:
    result = prom.custom_query(promql)
    return float(result[0]["value"][1]) if result else None


def wait_value(
    prom: PrometheusConnect, promql: str, ok: Callable[[float], bool], timeout: float = 30.0
) -> float:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = value(prom, promql)
        if seen is not None and ok(seen):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{promql} never satisfied the check; last value {seen}")


def test_drift_alert_fires_on_shifted_traffic_only(
    server: ServerProcess,
    prometheus_factory: Callable[..., PrometheusServer],
    tmp_path: Path,
) -> None:
    rules = rules_with_for(RULES, tmp_path / "rules-short.yaml", f"{SHORT_FOR:.0f}s")
    prometheus = prometheus_factory(targets=[f"127.0.0.1:{server.port}"], rule_files=[rules])
    prom = PrometheusConnect(url=prometheus.url, disable_ssl=True)
    wait_value(prom, 'up{job="ganops-serving"}', lambda v: v == 1.0)
    wait_value(prom, f"gan_model_info{{{SELECTOR}}}", lambda v: v == 1.0)

    # Drift-free traffic: images the reference never saw, from the training distribution.
    send(server, scenes(2 * WINDOW, seed=1))
    wait_value(prom, f"gan_drift_window_fill{{{SELECTOR}}}", lambda v: v == 1.0)
    time.sleep(SHORT_FOR + 3.0)  # longer than `for:` plus a scrape and an evaluation
    calm = value(prom, f"max_over_time(gan_input_drift_score{{{SELECTOR}}}[10s])")
    assert calm is not None
    assert calm < 1.0
    assert prom.custom_query('ALERTS{alertname="GanInputDrift"}') == []

    # Shifted traffic: the same kind of scenes, 0.15 brighter.
    rng = np.random.default_rng(0)
    bright = np.stack(
        [apply_knobs(im, DriftKnobs(brightness=0.15), rng) for im in scenes(WINDOW, 2)]
    )
    send(server, bright)
    score = wait_value(prom, f"gan_input_drift_score{{{SELECTOR}}}", lambda v: v > 1.0)
    brightness = value(prom, f'gan_input_drift_feature_score{{{SELECTOR},feature="brightness"}}')
    assert brightness is not None
    assert brightness > 1.0
    assert score >= brightness

    deadline = time.monotonic() + 30.0
    firing: list[dict[str, object]] = []
    while time.monotonic() < deadline and not firing:
        firing = prom.custom_query('ALERTS{alertname="GanInputDrift",alertstate="firing"}')
        time.sleep(0.5)
    assert firing, f"GanInputDrift never fired: {prometheus.alerts()}"
    labels = firing[0]["metric"]
    assert isinstance(labels, dict)
    assert (labels["model"], labels["version"], labels["severity"]) == ("cut", "7", "warning")
