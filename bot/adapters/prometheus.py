"""`MetricsSource` over Prometheus (prometheus-api-client): firing drift alerts, score history,
and the canary analysis' per-version measurements (their PromQL: `prometheus_canary`).

Metric and alert names are constructor arguments with the serving package's defaults, so the
drift watcher and a test can point this at any rules file.

Every request has a client-side timeout and at most one quick retry: the drift watcher does its
own backoff, and a Prometheus that accepts connections but never answers must not hang the
watcher's job for good. Failures become `UpstreamError` with one short line that the watcher
can post in the channel as it is.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from ganops.bot.adapters import prometheus_canary
from ganops.bot.canary.stats import VersionStats
from ganops.bot.ports import DriftAlert, UpstreamError
from ganops.bot.prometheus_access import (
    PrometheusAccess,
    TokenFileError,
    auth_for,
    session_for,
)


class PrometheusMetrics:
    def __init__(
        self,
        url: str,
        *,
        alert: str = "GanInputDrift",
        absent_alert: str = "GanDriftScoreAbsent",
        score_metric: str = "gan_input_drift_score",
        feature_metric: str = "gan_input_drift_feature_score",
        timeout_s: float = 5.0,
        access: PrometheusAccess | None = None,
    ) -> None:
        """`access`: TLS trust and the bearer token (`bot.prometheus_access`); TLS is
        verified whatever it says, against its CA bundle when it names one."""
        self.url = url.rstrip("/")
        self.access = access or PrometheusAccess()
        self.alert = alert
        self.absent_alert = absent_alert
        self.score_metric = score_metric
        self.feature_metric = feature_metric
        self.timeout_s = timeout_s
        self._prom: Any = None

    def _client(self) -> Any:
        if self._prom is None:
            from prometheus_api_client import PrometheusConnect
            from urllib3.util.retry import Retry

            # The library's default retries three times with 2 s and 4 s pauses: six seconds
            # per failed query, spent inside the watcher's tick.
            retry = Retry(total=1, backoff_factor=0.2, status_forcelist=(502, 503, 504))
            self._prom = PrometheusConnect(
                url=self.url,
                retry=retry,
                timeout=self.timeout_s,
                session=session_for(self.access),
                auth=auth_for(self.access),
            )
        return self._prom

    def _query(self, promql: str) -> list[dict[str, Any]]:
        # The server-side timeout too, so that a slow query is cut off where it runs.
        params = {"timeout": _duration(self.timeout_s)}
        try:
            result = self._client().custom_query(promql, params=params)
        except Exception as exc:  # requests, JSON and HTTP errors all mean "no usable answer"
            raise UpstreamError(self._failure(exc)) from exc
        return list(result)

    def firing_drift_alerts(self) -> list[DriftAlert]:
        firing = self._query(f'ALERTS{{alertname="{self.alert}",alertstate="firing"}}')
        # Pending counts too: the silence starts at the first evaluation without a score,
        # and keep_firing_for holds GanInputDrift until well after that.
        silent = {_key(i): i for i in self._query(f'ALERTS{{alertname="{self.absent_alert}"}}')}
        alerts = [self._drift_alert(*_key(item), firing=True) for item in firing]
        for model, version in silent.keys() - {(a.model, a.version) for a in alerts}:
            alerts.append(self._drift_alert(model, version, firing=False))
        return [
            a if a.has_data else replace(a, active_since=self._since(self.absent_alert, a))
            for a in alerts
        ]

    def _drift_alert(self, model: str, version: str, *, firing: bool) -> DriftAlert:
        sel = f'model="{model}",version="{version}"'
        scores = self._query(f"max({self.score_metric}{{{sel}}})")
        if not scores:  # kept firing (keep_firing_for) over a series that is gone
            return DriftAlert(model, version, 0.0, has_data=False, firing=firing)
        features = self._query(f"max by (feature) ({self.feature_metric}{{{sel}}})")
        return DriftAlert(
            model=model,
            version=version,
            score=float(scores[0]["value"][1]),
            features={f["metric"].get("feature", "?"): float(f["value"][1]) for f in features},
            active_since=self._since(self.alert, DriftAlert(model, version, 0.0)),
            firing=firing,
        )

    def _since(self, alert: str, a: DriftAlert) -> float | None:
        sel = f'alertname="{alert}",model="{a.model}",version="{a.version}"'
        since = self._query(f"ALERTS_FOR_STATE{{{sel}}}")
        return float(since[0]["value"][1]) if since else None

    def score_history(
        self, model: str, version: str, hours: float = 3.0
    ) -> list[tuple[float, float]]:
        end = time.time()
        start = end - hours * 3600
        # ~240 points whatever the span, so a short one is not a single sample.
        step = max(1, int(hours * 3600 / 240))
        promql = f'max({self.score_metric}{{model="{model}",version="{version}"}})'
        try:
            series = self._client().custom_query_range(
                promql,
                start_time=datetime.fromtimestamp(start),
                end_time=datetime.fromtimestamp(end),
                step=f"{step}s",
                params={"timeout": _duration(self.timeout_s)},
            )
        except Exception as exc:
            raise UpstreamError(self._failure(exc)) from exc
        if not series:
            return []
        return [(float(t), float(v)) for t, v in series[0].get("values", [])]

    def compare_versions(
        self, *, model: str, versions: Sequence[str], window_s: float
    ) -> dict[str, VersionStats]:
        """Each version's requests, error rate, p95 latency, drift score and output means
        over the last `window_s` seconds, told apart by `gan_model_info`'s version label.

        Raises:
            UpstreamError: Prometheus cannot be reached or refuses a query.
            ValueError: `window_s` is not a positive number of seconds.
        """
        names = prometheus_canary.CanaryMetricNames(drift=self.score_metric)
        return prometheus_canary.compare_versions(
            self._query, model=model, versions=versions, window_s=window_s, names=names
        )

    def _failure(self, exc: Exception) -> str:
        """One line saying what went wrong, without the HTTP library's nested reprs."""
        from prometheus_api_client.exceptions import PrometheusApiClientException
        from requests.exceptions import ConnectionError, RetryError, SSLError, Timeout

        if isinstance(exc, SSLError):  # before ConnectionError, its base class
            why = (
                f"its TLS certificate is not trusted ({_tls_reason(exc)}); set "
                "PROMETHEUS_CA_BUNDLE to the CA file that signed it"
            )
        elif isinstance(exc, TokenFileError):
            why = f"cannot read PROMETHEUS_TOKEN_FILE ({exc.strerror or exc})"
        elif isinstance(exc, Timeout) or (
            isinstance(exc, ConnectionError) and "timed out" in str(exc)
        ):
            why = f"no answer within {self.timeout_s:g} s"
        elif isinstance(exc, ConnectionError):
            why = "cannot connect (is it running, and is PROMETHEUS_URL right?)"
        elif isinstance(exc, RetryError):
            why = "it keeps answering with a server error (5xx)"
        elif isinstance(exc, PrometheusApiClientException):
            return f"Prometheus at {self.url} refused the query: {_short(str(exc))}"
        elif isinstance(exc, ValueError):  # a 200 that is not JSON: not Prometheus's API
            why = "the answer is not Prometheus's JSON API (is PROMETHEUS_URL right?)"
        else:
            why = _short(f"{type(exc).__name__}: {exc}")
        return f"Prometheus at {self.url} did not answer: {why}"


def _key(item: dict[str, Any]) -> tuple[str, str]:
    labels = item.get("metric", {})
    return labels.get("model", ""), labels.get("version", "")


def _duration(seconds: float) -> str:
    """Prometheus durations take no decimals: 5.0 -> "5000ms"."""
    return f"{max(1, round(seconds * 1000))}ms"


def _tls_reason(exc: Exception) -> str:
    """The OpenSSL reason inside requests' nested wrappers ("certificate verify failed: …")."""
    text = str(exc)
    start = text.find("certificate verify failed")
    return _short(text[start:].split("')")[0] if start >= 0 else text, 120)


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
