"""Kill and resume: a local pipeline run is SIGKILLed during training (as a preempted pod:
no signal handler, no last checkpoint); a retry of the same request, in fresh output
folders, resumes from the durable checkpoint under the artifact URI, at the step reached,
with the same recipe, in the same MLflow run."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ganops.model.checkpoint import load_checkpoint
from ganops.pipeline import procs
from ganops.pipeline.launch.local import LocalLauncher
from ganops.pipeline.ports import RunParams, RunStatus

pytestmark = pytest.mark.slow

IMAGE = "ganops-trainer:test"
STEPS = 60  # the kill lands after 3 durable steps; the retry trains the rest
MIN_REACHED = 3
PARAMS = RunParams(steps=STEPS, synthetic_n=16, batch_size=2, image_size=32)
REQUEST = "req-kill/1"  # a slash would nest keys: the durable key is made safe
TIMEOUT_S = 600


def _wait_final(launcher: LocalLauncher, run_id: str) -> RunStatus:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        st = launcher.status(run_id)
        if st.final:
            return st
        time.sleep(1)
    raise AssertionError(f"run {run_id} not final after {TIMEOUT_S}s")


def _kill_during_training(launcher: LocalLauncher, run_id: str, ckpt: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    # Kill once a few steps are durable, so "resumed at the step reached" is not step 1 by luck.
    while not ckpt.is_file() or int(load_checkpoint(ckpt)["step"]) < MIN_REACHED:
        assert time.monotonic() < deadline, "no durable checkpoint appeared"
        assert not launcher.status(run_id).final, launcher.status(run_id).error
        time.sleep(0.2)
    row = launcher.store.get(run_id)
    assert row is not None
    assert row.pid
    os.killpg(row.pid, signal.SIGKILL)  # no goodbye: the pod's node went away
    while procs.alive(row.pid, row.pid_start):
        time.sleep(0.1)


def test_a_retry_with_fresh_folders_resumes_at_the_step_reached(
    tmp_path: Path, fresh_mlflow: Callable[[Path], str]
) -> None:
    artifacts = tmp_path / "bucket" / "ganops"
    mlflow_uri = fresh_mlflow(tmp_path / "mlflow.db")
    options = {"artifact_uri": str(artifacts), "checkpoint_minutes": 0.005}  # every 0.3 s
    first = LocalLauncher(tmp_path / "pod-1", mlflow_uri, IMAGE, **options)  # type: ignore[arg-type]
    run = first.launch(PARAMS, REQUEST)
    key = artifacts / "req-kill_1"
    _kill_during_training(first, run.run_id, key / "checkpoints" / "last.pt")
    assert first.status(run.run_id).state == "failed"
    reached = int(load_checkpoint(key / "checkpoints" / "last.pt")["step"])
    assert MIN_REACHED <= reached < STEPS
    mlflow_run = json.loads((key / "mlflow_run.json").read_text())["run_id"]

    # The retry: the same request, nothing of the first attempt's folders.
    second = LocalLauncher(tmp_path / "pod-2", mlflow_uri, IMAGE, **options)  # type: ignore[arg-type]
    retry = second.launch(PARAMS, REQUEST)
    st = _wait_final(second, retry.run_id)
    assert st.state in {"awaiting_approval", "gated"}, (st.state, st.error)
    assert st.train_step == STEPS
    assert st.result is not None
    assert st.result.mlflow_run_id == mlflow_run  # the same MLflow run goes on
    log = (tmp_path / "pod-2" / "runs" / retry.run_id / "worker.log").read_text()
    assert f"train: resumed from the checkpoint at step {reached}" in log
    final = load_checkpoint(key / "checkpoints" / "last.pt")
    assert int(final["step"]) == STEPS
    # The retry trained the recipe the killed attempt started (model/resume.py).
    assert (final["total_steps"], final["train"]["batch_size"]) == (STEPS, PARAMS.batch_size)
