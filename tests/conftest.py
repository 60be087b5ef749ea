"""Fixtures shared across test packages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.prometheus import PrometheusServer, prometheus_binary, start_prometheus


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """Start real Prometheus servers (see tests/fakes/prometheus.py); all are stopped afterwards.

    Call it with the keyword arguments of `start_prometheus` except `workdir`:
    `prometheus_factory(targets=["127.0.0.1:8080"], rule_files=[path])`.
    """
    if prometheus_binary() is None:
        pytest.skip("prometheus is not installed (make prometheus, or apt-get install prometheus)")
    started: list[PrometheusServer] = []

    def start(**kwargs: Any) -> PrometheusServer:
        server = start_prometheus(tmp_path / f"prometheus-{len(started)}", **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
