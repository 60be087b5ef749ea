"""The small plot of a canary step: each compared metric, canary beside stable, as PNG."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

# Figure (not pyplot) renders without a display or a global backend.
from matplotlib.figure import Figure


def comparison_png(judgement: Mapping[str, Any], title: str) -> bytes | None:
    """One pair of bars per metric that has numbers on both sides, each pair scaled to its
    larger value (the metrics have different units: the table beside it has the values).
    None when there is nothing to draw."""
    rows = [
        r
        for r in judgement.get("rows") or []
        if isinstance(r.get("canary_value"), int | float)
        and isinstance(r.get("stable_value"), int | float)
    ]
    if not rows:
        return None
    fig = Figure(figsize=(6, 2.4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for i, r in enumerate(rows):
        c, s = float(r["canary_value"]), float(r["stable_value"])
        top = max(abs(c), abs(s)) or 1.0
        colour = "#2eb67d" if r.get("ok") is not False else "#e01e5a"
        ax.bar(i - 0.18, s / top, width=0.36, color="#6b6b6b", label="stable" if i == 0 else None)
        ax.bar(i + 0.18, c / top, width=0.36, color=colour, label="canary" if i == 0 else None)
    ax.set_xticks(range(len(rows)), [str(r.get("metric", "")) for r in rows], fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(0, 1.15)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
