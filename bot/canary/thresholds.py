"""The canary analysis' limits (GANOPS_CANARY_*), validated at start-up with the rest of the
settings (`bot.settings.Settings.canary_thresholds`). Same rule as there: a bad value is one
`ConfigError` line naming the variable, the value and what would be accepted."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ganops.bot.errors import ConfigError


@dataclass(frozen=True)
class CanaryThresholds:
    # Canary error rate may exceed the stable's by this many percentage points.
    max_error_rate_pp: float = 1.0
    # Canary p95 latency / stable p95 latency.
    max_latency_ratio: float = 1.5
    # ... but a canary within this many seconds of the stable's p95 passes whatever the ratio:
    # 2 ms against 1 ms is noise (and one histogram bucket), not a regression.
    latency_slack_s: float = 0.010
    # The canary's own input drift score (gan_input_drift_score; 1 is its alarm threshold).
    max_drift: float = 1.0
    # Largest relative difference of an output feature mean, canary against stable ...
    max_output_shift: float = 2.0
    # ... relative to max(|stable mean|, this): features near 0 (noise) would blow up a ratio.
    output_floor: float = 0.05
    # Fewer canary requests than this in the window: inconclusive, nothing is judged.
    min_requests: int = 20
    # A p95 needs this many requests on each side to be one: from fewer it is the slowest
    # request or two, i.e. a new process's cold start (seen in the demo: 148 ms vs 22 ms over
    # a first step of ~30 requests, 1.0x at the next step). Fewer: latency is a note.
    latency_min_requests: int = 50


def load_canary_thresholds(env: Mapping[str, str]) -> CanaryThresholds:
    """Raises: ConfigError naming the first bad setting."""
    d = CanaryThresholds()
    return CanaryThresholds(
        max_error_rate_pp=_number(env, "GANOPS_CANARY_MAX_ERROR_RATE", d.max_error_rate_pp, 0, 100),
        max_latency_ratio=_number(
            env, "GANOPS_CANARY_MAX_LATENCY_RATIO", d.max_latency_ratio, 1, 1000
        ),
        max_drift=_number(env, "GANOPS_CANARY_MAX_DRIFT", d.max_drift, 0, 1000),
        max_output_shift=_number(env, "GANOPS_CANARY_MAX_OUTPUT_SHIFT", d.max_output_shift, 0, 100),
        min_requests=int(_number(env, "GANOPS_CANARY_MIN_REQUESTS", d.min_requests, 1, 1e9, 1)),
    )


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float,
    step: float | None = None,
) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    whole = step is None or value.is_integer()
    if not (low <= value <= high and whole):
        kind = "a whole number" if step is not None else "a number"
        raise ConfigError(f"{name}={raw!r} must be {kind} from {low:g} to {high:g}")
    return value


__all__ = ["CanaryThresholds", "load_canary_thresholds"]
