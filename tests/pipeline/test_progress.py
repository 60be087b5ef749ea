"""Training progress and its ETA: the rate comes from the progress events' own timestamps over
the recent window, travels through the run's row (an old database gains the column) into the
run message, and there is no ETA until there is a rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ganops.bot.blocks.runs import run_text
from ganops.bot.runs.start import view_of
from ganops.pipeline.events import EVENTS_FILE, fold, read_events
from ganops.pipeline.launch import runstore
from ganops.pipeline.launch.runstore import RunStore, row_to_status
from ganops.pipeline.launch.worker import progress_changes
from ganops.pipeline.progress import eta_text, step_rate, train_progress_text


def test_no_rate_until_two_samples_show_progress() -> None:
    assert step_rate([]) is None
    assert step_rate([(100.0, 10)]) is None
    assert step_rate([(100.0, 10), (101.0, 10)]) is None  # no progress yet
    assert step_rate([(100.0, 10), (100.0, 12)]) is None  # no time passed
    assert step_rate([(100.0, 10), (104.0, 30)]) == 5.0


def test_the_rate_is_over_the_recent_window_and_this_attempt() -> None:
    slow_start = [(0.0, 0), (50.0, 1)]  # data loading, compilation
    steady = [(50.0 + t, 1 + 2 * t) for t in range(1, 121)]  # 2 steps/s since
    assert step_rate(slow_start + steady) == 2.0
    retried = [(0.0, 0), (10.0, 100), (11.0, 3), (13.0, 7)]  # a retried step starts over
    assert step_rate(retried) == 2.0


def test_progress_text() -> None:
    assert train_progress_text(120, 160, None) == "step 120/160 (75%)"
    assert train_progress_text(120, 160, 40 / 70) == "step 120/160 (75%) · ETA 2 min"
    assert train_progress_text(120, 160, 1.0) == "step 120/160 (75%) · ETA under 1 min"
    assert train_progress_text(160, 160, 1.0) == "step 160/160 (100%)"
    assert train_progress_text(None, 160, None) == "step 0/160 (0%)"
    assert eta_text(3725) == "ETA 1 h 03 min"


def _write_events(events_dir: Path, events: list[dict[str, object]]) -> None:
    events_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(ev) + "\n" for ev in events)
    (events_dir / EVENTS_FILE).write_text(lines)


def test_events_to_the_run_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = 1_700_000_000.0
    started = [
        {"ts": t0 + i, "step": s, "event": e}
        for i, (s, e) in enumerate(
            [
                ("ingest", "started"),
                ("ingest", "finished"),
                ("validate", "started"),
                ("validate", "finished"),
                ("train", "started"),
            ]
        )
    ]
    progress = [
        {
            "ts": t0 + 10 + 2 * i,
            "step": "train",
            "event": "progress",
            "train_step": 8 * i,
            "train_total": 160,
            "losses": {"G": 1.0},
        }
        for i in range(16)
    ]  # 4 steps/s: 120/160 at the last one, 40 left = 10 s
    _write_events(tmp_path / "events", started + progress[:1])
    assert fold(read_events(tmp_path / "events")).train_rate is None  # one sample: no ETA
    _write_events(tmp_path / "events", started + progress)
    folded = fold(read_events(tmp_path / "events"))
    assert folded.train_rate == 4.0

    # A state dir from before the column, with a run going: reopening adds the column.
    monkeypatch.setattr(runstore, "_UPGRADES", ())
    old = RunStore(tmp_path)
    with old.tx() as conn:
        store_columns = {r[1] for r in conn.execute("PRAGMA table_info(pipeline_runs)")}
        assert "train_rate" not in store_columns
        conn.execute(
            "INSERT INTO pipeline_runs(run_id, request_id, backend, model, params, state, "
            "created_at, updated_at) VALUES('local-1', 'r-1', 'local', 'cut', '{}', 'running', ?, ?)",
            (t0, t0),
        )
    monkeypatch.undo()
    store = RunStore(tmp_path)
    store.update("run_id", "local-1", progress_changes(folded), only_active=True)
    stored = store.get("local-1")
    assert stored is not None
    status = row_to_status(stored)
    assert status.train_rate == 4.0

    class _Row:  # the bot's runbook row: only what view_of reads
        run_id, model, requested_by, params, url, source = (
            "local-1",
            "cut",
            "U1",
            {},
            None,
            "/retrain",
        )
        created_at = t0

    shown = run_text(view_of(_Row(), status, now=t0 + 45))  # type: ignore[arg-type]
    assert "stage 3/6 · train · step 120/160 (75%) · ETA under 1 min" in shown
