"""Small PNG plots for Slack cards (matplotlib, Agg backend, no display)."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence

# Figure (not pyplot) renders without a display or a global backend.
from matplotlib.figure import Figure

# Context before the episode on the alarm's plot: enough to see the score before it moved.
BEFORE_S = 1800.0


def drift_score_plot(
    history: Sequence[tuple[float, float]], title: str, threshold: float = 1.0
) -> bytes:
    """The score over its samples, as PNG bytes (the card renderer's plot)."""
    return to_png(score_figure(history, title, threshold))


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def score_figure(
    history: Sequence[tuple[float, float]],
    title: str,
    threshold: float = 1.0,
    *,
    start: float | None = None,
    end: float | None = None,
    marks: Sequence[tuple[float, str]] = (),
) -> Figure:
    """The drift score over time with the alarm threshold and vertical marks (the alarm, the
    deploy). The x axis is minutes before `end` (default: the last sample) and spans from
    `start` (default: the first sample), however few samples there are."""
    fig = Figure(figsize=(6, 2.4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    t_end = end if end is not None else (history[-1][0] if history else time.time())
    t_start = start if start is not None else (history[0][0] if history else t_end - BEFORE_S)
    if history:
        xs = [(t - t_end) / 60.0 for t, _ in history]
        ax.plot(xs, [v for _, v in history], color="#1264a3", linewidth=1.5, label="drift score")
    else:
        ax.text(0.5, 0.5, "no samples yet", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(threshold, color="#e01e5a", linestyle="--", linewidth=1, label="threshold")
    colours = ("#ecb22e", "#2eb67d", "#6b6b6b")
    for i, (t, label) in enumerate(marks):
        ax.axvline((t - t_end) / 60.0, color=colours[i % 3], linestyle=":", linewidth=1.5)
        ax.annotate(label, ((t - t_end) / 60.0, 1.0), xycoords=("data", "axes fraction"),
                    fontsize=7, rotation=90, va="top", ha="right")  # fmt: skip
    ax.set_xlim(min(-1.0, (t_start - t_end) / 60.0), 0.0)
    ax.set_xlabel(f"minutes before {time.strftime('%H:%M', time.localtime(t_end))}")
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
