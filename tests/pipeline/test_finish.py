"""The exit handler reads the body's final status in either backend's words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ganops.pipeline.events import emit
from ganops.pipeline.steps.finish import run_finalize_step


@pytest.mark.parametrize(
    ("kfp_state", "state"),
    [
        ("SUCCEEDED", "awaiting_approval"),  # KFP's run and task states
        ("COMPLETE", "awaiting_approval"),  # ML Metadata's execution state
        ("Complete", "awaiting_approval"),
        ("FAILED", "failed"),
        ("CANCELED", "failed"),
    ],
)
def test_finalize_accepts_complete_as_well_as_succeeded(
    kfp_state: str, state: str, tmp_path: Path
) -> None:
    events = str(tmp_path / "events")
    emit(events, "gate", "started")
    emit(events, "gate", "finished", facts={"gate_passed": True, "deployed": False})
    record = json.loads(
        run_finalize_step(
            kfp_state=kfp_state,
            error_message="",
            model="cut",
            auto_deploy=False,
            image="img:1",
            mlflow_uri="",
            run_id="r1",
            events_dir=events,
            summary_path=str(tmp_path / "summary.md"),
        )
    )
    assert record["state"] == state
