"""The detached process that runs one local pipeline: `python -m ganops.pipeline.launch.worker`.

It runs the compiled CT pipeline with kfp.local's SubprocessRunner (use_venv=False: each step
is a subprocess of this interpreter), copies the steps' progress events into the run's row
while it runs, and writes the final state the exit handler recorded. Its stdout/stderr (every
step's log) go to `<state_dir>/runs/<run_id>/worker.log`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ganops.pipeline import procs
from ganops.pipeline.events import Progress, error_text, fold, read_events
from ganops.pipeline.launch.runstore import RunStore
from ganops.pipeline.params import RunStorage
from ganops.pipeline.ports import RunParams

POLL_S = 0.5


def progress_changes(progress: Progress) -> dict[str, Any]:
    """The row columns that the events determine while a run is going."""
    return {
        "current_step": progress.current_step,
        "steps_done": progress.steps_done,
        "train_step": progress.train_step,
        "train_total": progress.train_total,
        "train_rate": progress.train_rate,
        "losses": progress.losses,
    }


def final_changes(progress: Progress, crash: str | None, failed_task: str | None) -> dict[str, Any]:
    """The row's final columns: the exit handler's record, or a failure if it left none.

    `failed_task` is the step kfp.local saw fail; it names the step when the step died
    before it could report (an import error in its subprocess, say).
    """
    changes = progress_changes(progress)
    changes.update(current_step=None, finished_at=time.time())
    record = dict(progress.final or {})
    reported = progress.failed_step or (record.get("failed_step") if record else None)
    if record and record.get("state") != "failed":
        changes.update(
            state=record["state"], failed_step=None, error=None, result=record.get("result")
        )
        return changes
    step = reported or progress.current_step or failed_task
    error = progress.error if reported else None
    if error is None:
        error = crash or (f"step {step} failed before reporting why" if step else None)
    changes.update(
        state="failed",
        failed_step=step,
        result=record.get("result"),
        error=error or record.get("error") or "the pipeline ended without a final state",
    )
    return changes


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_INNER = re.compile(r"Inner task failed: '([^']+)'")


def failed_task(message: str) -> str | None:
    """The innermost failed task in kfp.local's failure message, as a pipeline step name."""
    from ganops.pipeline.ct_pipeline import STEP_TASKS

    match = _INNER.search(_ANSI.sub("", message))
    if match is None:
        return None
    return STEP_TASKS.get(match.group(1), match.group(1))


class EventTail(threading.Thread):
    """Copies the folded events into the row every POLL_S seconds until stopped."""

    def __init__(self, store: RunStore, run_id: str, events_dir: Path) -> None:
        super().__init__(name="event-tail", daemon=True)
        self.store, self.run_id, self.events_dir = store, run_id, events_dir
        self.done = threading.Event()

    def run(self) -> None:
        last: dict[str, Any] | None = None
        while not self.done.wait(POLL_S):
            changes = progress_changes(fold(read_events(self.events_dir)))
            if changes != last:
                self.store.update("run_id", self.run_id, changes, only_active=True)
                last = changes


def run_pipeline(
    params: RunParams,
    run_dir: Path,
    mlflow_uri: str,
    image: str,
    run_id: str,
    *,
    storage: RunStorage | None = None,
) -> str | None:
    """Run the whole pipeline in this process's kfp.local session.

    Returns the step that failed, if kfp.local reports one.
    """
    from kfp import local

    from ganops.pipeline.ct_pipeline import build_pipeline
    from ganops.pipeline.params import pipeline_arguments
    from ganops.pipeline.placement import DEFAULT_PLACEMENT

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(run_dir / "outputs"),
        workspace_root=str(run_dir / "workspace"),
        raise_on_error=True,  # the exit handler still runs; the error names the failed task
    )
    args = pipeline_arguments(params, mlflow_uri, str(run_dir / "events"), run_id, storage=storage)
    # No task retries here: a local failure is deterministic, not a preempted GPU node.
    placement = dataclasses.replace(DEFAULT_PLACEMENT, train_retries=0)
    try:
        build_pipeline(image, placement)(**args)
    except RuntimeError as exc:
        task = failed_task(str(exc))
        if task is None:
            raise
        return task
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ganops.pipeline.launch.worker")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--mlflow-uri", default="")
    parser.add_argument("--image", default="ganops-trainer:local")
    parser.add_argument("--artifact-uri", default="")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0)
    parser.add_argument("--data-allow", default="[]", help="GANOPS_DATA_ALLOW, a JSON list")
    parser.add_argument(
        "--device-data-gb", type=float, default=None, help="GANOPS_DEVICE_DATA_GB (unset: env)"
    )
    args = parser.parse_args(argv)
    store = RunStore(args.state_dir)
    row = store.get(args.run_id)
    if row is None:
        print(f"no run {args.run_id} in {store.path}", flush=True)
        return 2
    running = {"state": "running", "pid": os.getpid(), "pid_start": procs.start_time(os.getpid())}
    if not store.update("run_id", args.run_id, running, only_active=True):
        return 0  # cancelled before it started
    run_dir = args.state_dir / "runs" / args.run_id
    tail = EventTail(store, args.run_id, run_dir / "events")
    tail.start()
    crash = task = None
    try:
        params = RunParams(**row.params)
        storage = RunStorage(
            args.artifact_uri,
            row.request_id,
            args.checkpoint_minutes,
            tuple(json.loads(args.data_allow)),
            device_data_gb=args.device_data_gb,
        )
        task = run_pipeline(
            params, run_dir, args.mlflow_uri, args.image, args.run_id, storage=storage
        )
    except Exception as exc:  # the run fails; the worker must still record why
        crash = f"the local runner failed: {error_text(exc)}"
        print(crash, flush=True)
    finally:
        tail.done.set()
        tail.join()
    changes = final_changes(fold(read_events(run_dir / "events")), crash, task)
    store.update("run_id", args.run_id, changes, only_active=True)
    print(f"worker: run {args.run_id} ended {changes['state']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
