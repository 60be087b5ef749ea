"""`MetricsSource` over Prometheus (prometheus-api-client): firing drift alerts, score history.

Metric and alert names are constructor arguments with the serving package's defaults, so the
drift watcher and a test can point this at any rules file.
"""

from __future__ import annotations

import time
from typing import Any

from bot.ports import DriftAlert, UpstreamError


class PrometheusMetrics:
    def __init__(
        self,
        url: str,
        *,
        alert: str = "GanInputDrift",
        score_metric: str = "gan_input_drift_score",
        feature_metric: str = "gan_input_drift_feature_score",
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.alert = alert
        self.score_metric = score_metric
        self.feature_metric = feature_metric
        self.timeout_s = timeout_s
        self._prom: Any = None

    def _client(self) -> Any:
        if self._prom is None:
            from prometheus_api_client import PrometheusConnect

            self._prom = PrometheusConnect(url=self.url, disable_ssl=True)
        return self._prom

    def _query(self, promql: str) -> list[dict[str, Any]]:
        try:
            result = self._client().custom_query(
                promql, params={"timeout": _duration(self.timeout_s)}
            )
        except Exception as exc:  # requests, JSON and HTTP errors all mean "not answering"
            raise UpstreamError(f"Prometheus at {self.url} did not answer: {exc}") from exc
        return list(result)

    def firing_drift_alerts(self) -> list[DriftAlert]:
        firing = self._query(f'ALERTS{{alertname="{self.alert}",alertstate="firing"}}')
        alerts = []
        for item in firing:
            labels = item.get("metric", {})
            model, version = labels.get("model", ""), labels.get("version", "")
            sel = f'model="{model}",version="{version}"'
            scores = self._query(f"max({self.score_metric}{{{sel}}})")
            features = self._query(f"max by (feature) ({self.feature_metric}{{{sel}}})")
            since = self._query(f'ALERTS_FOR_STATE{{alertname="{self.alert}",{sel}}}')
            alerts.append(
                DriftAlert(
                    model=model,
                    version=version,
                    score=float(scores[0]["value"][1]) if scores else 0.0,
                    features={
                        f["metric"].get("feature", "?"): float(f["value"][1]) for f in features
                    },
                    active_since=float(since[0]["value"][1]) if since else None,
                )
            )
        return alerts

    def score_history(
        self, model: str, version: str, hours: float = 3.0
    ) -> list[tuple[float, float]]:
        end = time.time()
        start = end - hours * 3600
        step = max(15, int(hours * 3600 / 240))
        promql = f'max({self.score_metric}{{model="{model}",version="{version}"}})'
        try:
            from datetime import datetime

            series = self._client().custom_query_range(
                promql,
                start_time=datetime.fromtimestamp(start),
                end_time=datetime.fromtimestamp(end),
                step=f"{step}s",
            )
        except Exception as exc:
            raise UpstreamError(f"Prometheus at {self.url} did not answer: {exc}") from exc
        if not series:
            return []
        return [(float(t), float(v)) for t, v in series[0].get("values", [])]


def _duration(seconds: float) -> str:
    """Prometheus durations take no decimals: 5.0 -> "5000ms"."""
    return f"{max(1, round(seconds * 1000))}ms"
