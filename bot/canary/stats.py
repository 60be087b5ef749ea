"""What the canary analysis measures of one model version over a window: a leaf module, shared
by the `MetricsSource` port (which fills it from Prometheus) and the verdict (`analysis`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class VersionStats:
    """One version's traffic over the analysis window, summed over its replicas.

    `error_rate` and `p95_latency_s` are None without requests in the window; `drift_score` is
    None while the version has no drift series (no reference, or its window not yet scored);
    `output_means` is empty before its first served output.
    """

    version: str
    requests: float  # Prometheus' `increase`: extrapolated, so not always a whole number
    errors: float = 0.0  # 5xx answers among them
    error_rate: float | None = None  # errors / requests, 0..1
    p95_latency_s: float | None = None
    drift_score: float | None = None  # gan_input_drift_score: > 1 means drift
    output_means: Mapping[str, float] = field(default_factory=dict)  # feature -> mean

    @property
    def has_traffic(self) -> bool:
        return self.requests > 0


__all__ = ["VersionStats"]
