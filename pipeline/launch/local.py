"""`LocalLauncher`: the CT pipeline on this machine with kfp.local's SubprocessRunner.

It runs each pipeline in a detached worker process (`python -m
pipeline.launch.worker`), so runs never block the caller and survive a bot restart. Run ids,
request ids and progress live in `<state_dir>/ganops.db` (table `pipeline_runs`).
This module imports neither torch nor kfp: the bot imports it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import uuid
from pathlib import Path

from ganops import pipeline
from ganops.pipeline import procs
from ganops.pipeline.launch.runstore import RunRow, RunStore, claim_request, row_to_status
from ganops.pipeline.params import validate_params
from ganops.pipeline.ports import (
    InvalidParamsError,
    LaunchResult,
    RunParams,
    RunStatus,
    UnknownRunError,
    UpstreamError,
)
from ganops.pipeline.results import with_links

LOCAL_IMAGE = "ganops-trainer:local"
WORKER_LOG = "worker.log"


class LocalLauncher:
    """Runs the CT pipeline with kfp.local's SubprocessRunner in detached worker processes."""

    backend = "local"

    def __init__(
        self,
        state_dir: Path,
        mlflow_uri: str,
        image: str = LOCAL_IMAGE,
        *,
        max_active_per_model: int | None = 1,
        python: str = sys.executable,
        spawn_grace_s: float = 60.0,
        artifact_uri: str | None = None,
        checkpoint_minutes: float = 10.0,
        device_data_gb: float | None = None,
        mlflow_ui_url: str | None = None,
        data_allow: tuple[str, ...] = (),
    ) -> None:
        """`artifact_uri` keeps each request's checkpoints (default: `state_dir/artifacts`),
        so a retry of a killed run resumes wherever its outputs went. `data_allow`
        (GANOPS_DATA_ALLOW) goes to the ingest step, which checks the data where it reads it."""
        self.state_dir = Path(state_dir).resolve()
        self.mlflow_uri = mlflow_uri
        self.image = image or LOCAL_IMAGE
        self.max_active = max_active_per_model
        self.python = python
        self.spawn_grace_s = spawn_grace_s
        self.store = RunStore(self.state_dir)
        self.artifact_uri = artifact_uri or str(self.state_dir / "artifacts")
        self.checkpoint_minutes = checkpoint_minutes
        self.device_data_gb = device_data_gb  # GANOPS_DEVICE_DATA_GB; None: the env's
        self.mlflow_ui_url = mlflow_ui_url
        self.data_allow = tuple(data_allow)

    def run_dir(self, run_id: str) -> Path:
        return self.state_dir / "runs" / run_id

    def launch(self, params: RunParams, request_id: str) -> LaunchResult:
        params = _local_data(validate_params(params))
        row, created = claim_request(
            self.store,
            params,
            request_id,
            self.backend,
            self.max_active,
            new_run_id=lambda: f"local-{uuid.uuid4().hex[:12]}",
            is_dead=self._dead,
            mark_dead=self._death_changes,
        )
        assert row.run_id is not None
        if created:
            self._start_worker(row.run_id)
        return LaunchResult(run_id=row.run_id, url=None, created=created)

    def status(self, run_id: str) -> RunStatus:
        status = row_to_status(self._fresh(run_id))
        return dataclasses.replace(status, result=with_links(status.result, self.mlflow_ui_url))

    def cancel(self, run_id: str) -> None:
        row = self._fresh(run_id)
        if row.final:
            return
        now = time.time()
        changes = {"state": "cancelled", "finished_at": now, "current_step": None}
        self.store.update("run_id", run_id, changes, only_active=True)
        if row.pid and procs.alive(row.pid, row.pid_start):
            procs.stop_group(row.pid)

    def list_runs(self, limit: int = 20) -> list[RunStatus]:
        rows = self.store.recent(limit, backend=self.backend)
        return [self.status(r.run_id) for r in rows if r.run_id]

    # --- internals -----------------------------------------------------------------

    def _fresh(self, run_id: str) -> RunRow:
        """The stored row, first marked failed if its worker died without finishing."""
        row = self.store.get(run_id)
        if row is None:
            raise UnknownRunError(f"no local run {run_id!r}")
        if not row.final and self._dead(row):
            self.store.update("run_id", run_id, self._death_changes(row), only_active=True)
            row = self.store.get(run_id) or row
        return row

    def _dead(self, row: RunRow) -> bool:
        if row.pid is None:
            return time.time() - row.created_at > self.spawn_grace_s
        return not procs.alive(row.pid, row.pid_start)

    def _death_changes(self, row: RunRow) -> dict[str, object]:
        log = self.run_dir(row.run_id or "") / WORKER_LOG
        who = f"the local worker (pid {row.pid})" if row.pid else "the local worker"
        return {
            "state": "failed",
            "failed_step": row.current_step,
            "error": f"{who} stopped before the run finished; see {log}",
            "finished_at": time.time(),
        }

    def _start_worker(self, run_id: str) -> None:
        argv = [
            self.python,
            "-m",
            "ganops.pipeline.launch.worker",
            "--state-dir",
            str(self.state_dir),
            "--run-id",
            run_id,
            "--mlflow-uri",
            self.mlflow_uri,
            "--image",
            self.image,
            "--artifact-uri",
            self.artifact_uri,
            "--checkpoint-minutes",
            str(self.checkpoint_minutes),
            "--data-allow",
            json.dumps(list(self.data_allow)),
        ]
        if self.device_data_gb is not None:
            argv += ["--device-data-gb", str(self.device_data_gb)]
        try:
            pid = procs.spawn(argv, self.run_dir(run_id) / WORKER_LOG, self.state_dir, _env())
        except OSError as exc:
            failed = {"state": "failed", "error": f"cannot start the local worker: {exc}"}
            self.store.update("run_id", run_id, failed, only_active=True)
            raise UpstreamError(f"cannot start the local pipeline worker: {exc}") from None
        started = {"pid": pid, "pid_start": procs.start_time(pid)}
        self.store.update("run_id", run_id, started, only_active=False)


def _local_data(params: RunParams) -> RunParams:
    """A local run reads folders of this machine: check now, and make the path absolute
    (the worker runs elsewhere)."""
    if params.nodes > 1:
        raise InvalidParamsError("nodes > 1 runs on Kubeflow Trainer: set KFP_HOST")
    data = params.data
    if data == "synthetic" or ("://" in data and not data.startswith("file://")):
        return params
    path = Path(data.removeprefix("file://")).expanduser()
    if not path.exists():
        raise InvalidParamsError(f"data={data!r}: no such folder or archive on this machine")
    # Absolute, not resolved: the ingest step resolves it, and names both in a refusal.
    return dataclasses.replace(params, data=os.path.abspath(path))


def _env() -> dict[str, str]:
    """The worker's environment: ours, with this checkout importable by the step subprocesses."""
    env = dict(os.environ)
    root = str(Path(pipeline.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
