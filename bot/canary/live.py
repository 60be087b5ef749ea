"""The analysis a running canary gets each tick: its traffic and the stable version's from
Prometheus (`MetricsSource.compare_versions`), judged by `analysis.judge`, as the JSON-able
mapping the controller stores and the thread shows (with numbers beside the shown values,
for the plot)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from ganops.bot.canary.analysis import judge
from ganops.bot.canary.controller import Analyse
from ganops.bot.canary.stats import VersionStats
from ganops.bot.canary.table import Canary
from ganops.bot.canary.thresholds import CanaryThresholds
from ganops.bot.ports import MetricsSource, UpstreamError


def live_analysis(metrics: MetricsSource, thresholds: CanaryThresholds) -> Analyse:
    def analyse(canary: Canary, window_s: float) -> Mapping[str, Any]:
        versions = [canary.version, *([canary.stable_version] if canary.stable_version else [])]
        try:
            stats = metrics.compare_versions(model=canary.model, versions=versions,
                                             window_s=window_s)  # fmt: skip
        except UpstreamError as exc:  # no verdict without data: held, never promoted blind
            return {"outcome": "inconclusive", "reasons": [f"no analysis: {exc}"], "rows": [],
                    "limits": list(threshold_lines(thresholds))}  # fmt: skip
        mine = stats.get(canary.version) or VersionStats(canary.version, 0.0)
        stable = stats.get(canary.stable_version) if canary.stable_version else None
        verdict = judge(canary=mine, stable=stable, thresholds=thresholds)
        rows = [{**asdict(r), **_numbers(r.metric, mine, stable)} for r in verdict.rows]
        return {
            "outcome": verdict.outcome,
            "reasons": list(verdict.reasons),
            "notes": list(verdict.notes),
            "rows": rows,
            "requests": {
                "canary": round(mine.requests),
                "stable": round(stable.requests) if stable else 0,
            },
            "window_s": round(window_s, 1),
            "limits": list(threshold_lines(thresholds)),  # as judged, for the thread's note
        }

    return analyse


def _numbers(metric: str, c: VersionStats, s: VersionStats | None) -> dict[str, float | None]:
    """The raw values behind a row, where the row is one number a side."""
    pick = {
        "error rate": lambda v: v.error_rate,
        "p95 latency": lambda v: v.p95_latency_s,
        "input drift score": lambda v: v.drift_score,
    }.get(metric)
    if pick is None:
        return {"canary_value": None, "stable_value": None}
    return {"canary_value": pick(c), "stable_value": pick(s) if s is not None else None}


def threshold_lines(t: CanaryThresholds) -> tuple[str, ...]:
    """The limits as `GANOPS_…=value`, for the context line under each step."""
    return (
        f"GANOPS_CANARY_MAX_ERROR_RATE={t.max_error_rate_pp:g} pp",
        f"GANOPS_CANARY_MAX_LATENCY_RATIO={t.max_latency_ratio:g}",
        f"GANOPS_CANARY_MAX_DRIFT={t.max_drift:g}",
        f"GANOPS_CANARY_MAX_OUTPUT_SHIFT={t.max_output_shift:g}",
        f"GANOPS_CANARY_MIN_REQUESTS={t.min_requests}",
    )
