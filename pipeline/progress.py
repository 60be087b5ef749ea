"""How far training has come and how long it has left, in the words every surface shows
(the run message in Slack, `ganops pipeline run`): "step 120/160 (75%) · ETA 1 min".

The rate comes from progress samples' own timestamps (the events a local run's train step
appends, or the MLflow history of `progress_step` on Kubeflow), over the recent window only,
so a slow first step (data loading, compilation) does not skew the estimate for long. There is
no ETA until two samples show progress. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

RATE_WINDOW_S = 60.0


def step_rate(
    samples: Sequence[tuple[float, int]], window_s: float = RATE_WINDOW_S
) -> float | None:
    """Training steps per second over the last `window_s` seconds of `(ts, step)` samples, in
    time order. Samples before a step count went down (a retried step) are not this attempt's.
    None until there are two samples with progress between them."""
    start = 0
    for i in range(1, len(samples)):
        if samples[i][1] < samples[i - 1][1]:
            start = i
    attempt = samples[start:]
    if len(attempt) < 2:
        return None
    last_ts, last_step = attempt[-1]
    recent = [s for s in attempt if s[0] >= last_ts - window_s]
    first_ts, first_step = recent[0] if len(recent) >= 2 else attempt[-2]
    if last_ts <= first_ts or last_step <= first_step:
        return None
    return (last_step - first_step) / (last_ts - first_ts)


def eta_seconds(step: int, total: int, rate: float | None) -> float | None:
    """Seconds left at `rate` steps per second; None without a rate."""
    if rate is None or rate <= 0:
        return None
    return max(0, total - step) / rate


def eta_text(seconds: float) -> str:
    """ "ETA under 1 min", "ETA 3 min", "ETA 1 h 05 min": whole minutes, rounded up, so the
    estimate does not tick (and edit a Slack message) every second."""
    if seconds < 60:
        return "ETA under 1 min"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"ETA {minutes} min"
    return f"ETA {minutes // 60} h {minutes % 60:02d} min"


def train_progress_text(step: int | None, total: int, rate: float | None) -> str:
    """ "step 120/160 (75%) · ETA 1 min"; the ETA only once there is a rate."""
    done = step or 0
    text = f"step {done}/{total} ({100 * done // max(total, 1)}%)"
    left = eta_seconds(done, total, rate)
    if left is not None and done < total:
        text += f" · {eta_text(left)}"
    return text


__all__ = ["RATE_WINDOW_S", "eta_seconds", "eta_text", "step_rate", "train_progress_text"]
