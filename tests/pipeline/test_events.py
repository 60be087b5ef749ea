"""Progress events, their fold, and how the worker turns them into the final row."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganops.pipeline.events import (
    EVENTS_FILE,
    ProgressThrottle,
    emit,
    fold,
    read_events,
    step_scope,
)
from ganops.pipeline.launch.worker import failed_task, final_changes
from ganops.pipeline.results import final_state


def test_fold_tracks_steps_progress_and_facts(tmp_path: Path) -> None:
    events = str(tmp_path)
    with step_scope(events, "ingest") as facts:
        facts["data_digest"] = "sha256:abc"
    with step_scope(events, "validate"):
        pass
    emit(events, "train", "started")
    ProgressThrottle(events)(5, 10, {"G": 1.5, "D": 0.5})
    progress = fold(read_events(events))
    assert (progress.steps_done, progress.current_step) == (2, "train")
    assert (progress.train_step, progress.train_total) == (5, 10)
    assert progress.losses == {"G": 1.5, "D": 0.5}
    assert progress.facts["ingest"] == {"data_digest": "sha256:abc"}


def test_a_failing_step_reports_its_error_and_reraises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"trainA/x\.png"), step_scope(str(tmp_path), "validate"):
        raise ValueError("bad data: trainA/x.png: unreadable")
    progress = fold(read_events(tmp_path))
    assert progress.failed_step == "validate"
    assert progress.error == "bad data: trainA/x.png: unreadable"


def test_torn_lines_are_skipped_and_no_dir_means_no_events(tmp_path: Path) -> None:
    emit(str(tmp_path), "ingest", "started")
    with open(tmp_path / EVENTS_FILE, "a") as f:
        f.write('{"step": "ingest", "ev')  # a writer killed mid-line
    assert len(read_events(tmp_path)) == 1
    emit("", "ingest", "started")  # Kubeflow runs: a no-op
    assert read_events(tmp_path / "missing") == []


def test_throttle_keeps_the_last_step(tmp_path: Path) -> None:
    throttle = ProgressThrottle(str(tmp_path), interval=3600)
    for step in range(1, 11):
        throttle(step, 10, {"G": float(step)})
    steps = [e["train_step"] for e in read_events(tmp_path)]
    assert steps == [1, 10]


def test_final_state_from_the_gate() -> None:
    assert final_state(False, {"gate_passed": True}) == "failed"
    assert final_state(True, None) == "failed"
    assert final_state(True, {"gate_passed": False}) == "gated"
    assert final_state(True, {"gate_passed": True}) == "awaiting_approval"
    assert final_state(True, {"gate_passed": True, "deployed": True}) == "deployed"


def test_worker_uses_the_exit_handlers_record(tmp_path: Path) -> None:
    emit(str(tmp_path), "finalize", "final", state="gated", result={"version": "3"})
    changes = final_changes(fold(read_events(tmp_path)), None, None)
    assert (changes["state"], changes["result"], changes["error"]) == (
        "gated",
        {"version": "3"},
        None,
    )


def test_worker_names_a_step_that_died_before_reporting(tmp_path: Path) -> None:
    emit(str(tmp_path), "finalize", "final", state="failed", failed_step=None, error="x")
    message = "Pipeline \x1b[95m'ganops-ct'\x1b[0m finished. Inner task failed: \x1b[96m'ingest'\x1b[0m inside \x1b[96m'exit-handler-1'\x1b[0m."
    task = failed_task(message)
    assert task == "ingest"
    changes = final_changes(fold(read_events(tmp_path)), None, task)
    assert (changes["state"], changes["failed_step"]) == ("failed", "ingest")
    assert "ingest" in changes["error"]
    assert failed_task("Inner task failed: 'gate-reject' inside 'condition-4'") == "gate"
    assert failed_task("something else") is None


def test_worker_without_any_record_fails_with_the_crash(tmp_path: Path) -> None:
    emit(str(tmp_path), "train", "started")
    changes = final_changes(fold(read_events(tmp_path)), "the local runner failed: boom", None)
    assert (changes["state"], changes["failed_step"]) == ("failed", "train")
    assert changes["error"] == "the local runner failed: boom"
