"""The alarm's plot spans well before the episode, however few samples there are."""

from __future__ import annotations

from ganops.bot.drift.plots import BEFORE_S, drift_score_plot, score_figure

NOW = 1_700_000_000.0


def test_one_sample_still_spans_the_half_hour_before_the_alarm() -> None:
    alarm = NOW - 60
    fig = score_figure(
        [(NOW, 2.5)], "cut v3", start=alarm - BEFORE_S, end=NOW, marks=[(alarm, "alarm")]
    )
    [ax] = fig.axes
    low, high = ax.get_xlim()
    assert (low, high) == (-31.0, 0.0)  # minutes before now: 30 before the alarm, 1 since
    lines = ax.get_lines()
    assert any(list(line.get_ydata()) == [1.0, 1.0] for line in lines)  # the threshold
    assert any(list(line.get_xdata()) == [-1.0, -1.0] for line in lines)  # the alarm mark
    assert [t.get_text() for t in ax.texts] == ["alarm"]


def test_the_png_is_a_png() -> None:
    assert drift_score_plot([], "empty")[:8] == b"\x89PNG\r\n\x1a\n"
