"""Small PNG plots for Slack cards (matplotlib, Agg backend, no display)."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence

# Figure (not pyplot) renders without a display or a global backend.
from matplotlib.figure import Figure


def drift_score_plot(
    history: Sequence[tuple[float, float]], title: str, threshold: float = 1.0
) -> bytes:
    """The drift score over time with the alarm threshold; returns PNG bytes."""
    fig = Figure(figsize=(6, 2.4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    if history:
        t0 = history[-1][0]
        xs = [(t - t0) / 60.0 for t, _ in history]
        ax.plot(xs, [v for _, v in history], color="#1264a3", linewidth=1.5, label="drift score")
        ax.set_xlabel(f"minutes before {time.strftime('%H:%M', time.localtime(t0))}")
    else:
        ax.text(0.5, 0.5, "no samples yet", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(threshold, color="#e01e5a", linestyle="--", linewidth=1, label="threshold")
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
