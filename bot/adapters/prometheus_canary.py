"""The canary analysis' PromQL: each version's requests, error rate, p95 latency, drift score
and output feature means over a window (`PrometheusMetrics.compare_versions`).

The model server's request counter and latency histogram carry no version label (one process
serves one version); `gan_model_info{model, version}` says which version each scrape target
serves. So the counters are joined with it on the target's identity, `(job, instance)`:

    sum by (version, status) (
      increase(gan_requests_total[W])
      * on (job, instance) group_left (version)
      max by (job, instance, version) (gan_model_info{model="M"}))

The info gauge is 1, so the product is the counter's increase, now labelled with the version;
`sum by (version)` then adds up a version's replicas. The latency histogram's buckets are joined
the same way before `histogram_quantile`. The drift score and the output means carry the
version themselves.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ganops.bot.canary.stats import VersionStats

Query = Callable[[str], list[dict[str, Any]]]


@dataclass(frozen=True)
class CanaryMetricNames:
    """The serving package's public metric names (`model.serving.metrics`)."""

    info: str = "gan_model_info"
    requests: str = "gan_requests_total"
    latency: str = "gan_request_latency_seconds"
    drift: str = "gan_input_drift_score"
    output: str = "gan_output_feature"


def compare_versions(
    query: Query,
    *,
    model: str,
    versions: Sequence[str],
    window_s: float,
    names: CanaryMetricNames | None = None,
) -> dict[str, VersionStats]:
    """Each of `versions` (a version without data gets zero requests and Nones).

    Raises:
        ValueError: `window_s` is not a positive number of seconds.
        UpstreamError: from `query`.
    """
    if not window_s > 0 or math.isinf(window_s):
        raise ValueError(f"the analysis window must be a positive number of seconds: {window_s}")
    n = names or CanaryMetricNames()
    sel = f"{{model={_quote(model)}}}"
    window = f"[{max(1, round(window_s))}s]"
    by_target = (
        f"on (job, instance) group_left (version) max by (job, instance, version) ({n.info}{sel})"
    )
    counts = query(f"sum by (version, status) (increase({n.requests}{window}) * {by_target})")
    p95 = query(
        "histogram_quantile(0.95, sum by (version, le) "
        f"(increase({n.latency}_bucket{window}) * {by_target}))"
    )
    drift = query(f"max by (version) ({n.drift}{sel})")
    outputs = query(f"avg by (version, feature) ({n.output}{sel})")

    requests: dict[str, float] = defaultdict(float)
    errors: dict[str, float] = defaultdict(float)
    for item in counts:
        version, value = _version(item), _value(item)
        if value is None:
            continue
        requests[version] += value
        if item["metric"].get("status", "").startswith("5"):
            errors[version] += value
    latency = {_version(i): _value(i) for i in p95}
    scores = {_version(i): _value(i) for i in drift}
    means: dict[str, dict[str, float]] = defaultdict(dict)
    for item in outputs:
        value = _value(item)
        if value is not None:
            means[_version(item)][item["metric"].get("feature", "?")] = value

    found = {}
    for version in versions:
        total = requests.get(version, 0.0)
        found[version] = VersionStats(
            version=version,
            requests=total,
            errors=errors.get(version, 0.0),
            error_rate=errors.get(version, 0.0) / total if total > 0 else None,
            p95_latency_s=latency.get(version) if total > 0 else None,
            drift_score=scores.get(version),
            output_means=dict(means.get(version, {})),
        )
    return found


def _quote(value: str) -> str:
    """A PromQL string literal: JSON's escapes are a subset of the ones PromQL reads."""
    return json.dumps(value)


def _version(item: dict[str, Any]) -> str:
    return str(item.get("metric", {}).get("version", ""))


def _value(item: dict[str, Any]) -> float | None:
    """The sample's value; None for NaN (a quantile of an empty histogram)."""
    value = float(item["value"][1])
    return None if math.isnan(value) else value


__all__ = ["CanaryMetricNames", "compare_versions"]
