"""A `PipelineLauncher` whose runs the test moves by hand: for timing-sensitive bot tests.

It keeps the protocol's promises honestly: parameters are validated with the same function
as the real launchers, `launch` is idempotent on the request id (also under concurrency),
one run per model may be active, unknown runs are UnknownRunError and a downed backend is
UpstreamError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ganops.pipeline.params import validate_params
from ganops.pipeline.ports import (
    ConcurrentRunError,
    LaunchResult,
    RunParams,
    RunResult,
    RunStatus,
    UnknownRunError,
    UpstreamError,
)
from ganops.pipeline.results import to_run_result


class ScriptedLauncher:
    def __init__(self, url_base: str | None = None) -> None:
        self.url_base = url_base  # set: runs get a KFP-like link
        self.down = False  # the backend is unreachable
        self.launches = 0  # runs actually created
        self._runs: dict[str, RunStatus] = {}
        self._requests: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def launch(self, params: RunParams, request_id: str) -> LaunchResult:
        params = validate_params(params)
        with self._lock:
            if self.down:
                raise UpstreamError("the pipeline backend is unreachable")
            if request_id in self._requests:
                run = self._runs[self._requests[request_id]]
                return LaunchResult(run.run_id, run.url, created=False)
            for run in self._runs.values():
                if run.model == params.model and not run.final:
                    raise ConcurrentRunError(params.model, run.run_id)
            run_id = f"run-{next(self._ids)}"
            url = f"{self.url_base}/#/runs/details/{run_id}" if self.url_base else None
            self._runs[run_id] = RunStatus(
                run_id=run_id,
                state="queued",
                request_id=request_id,
                model=params.model,
                created_at=time.time(),
                updated_at=time.time(),
                url=url,
                params=params.as_dict(),
            )
            self._requests[request_id] = run_id
            self.launches += 1
            return LaunchResult(run_id, url, created=True)

    def status(self, run_id: str) -> RunStatus:
        with self._lock:
            if self.down:
                raise UpstreamError("the pipeline backend is unreachable")
            if run_id not in self._runs:
                raise UnknownRunError(f"no run {run_id}")  # as KFP's 404, the local store
            return self._runs[run_id]

    def cancel(self, run_id: str) -> None:
        self.move(run_id, state="cancelled", finished_at=time.time())

    def list_runs(self, limit: int = 20) -> list[RunStatus]:
        with self._lock:
            return sorted(self._runs.values(), key=lambda r: r.created_at or 0)[-limit:]

    # --- the test's controls ----------------------------------------------------------------

    def move(self, run_id: str, **changes: Any) -> RunStatus:
        """Change a run's status fields, as the pipeline would while it runs."""
        with self._lock:
            run = dataclasses.replace(self._runs[run_id], updated_at=time.time(), **changes)
            self._runs[run_id] = run
            return run

    def forget(self, run_id: str) -> None:
        """Someone deleted the run in the backend (the KFP UI's Delete)."""
        with self._lock:
            del self._runs[run_id]

    def only_run(self) -> str:
        with self._lock:
            [run_id] = self._runs
            return run_id


def finished(version: str = "3", artifacts: dict[str, str] | None = None) -> dict[str, Any]:
    """The status fields of a run that ended awaiting approval, with a champion to beat."""
    return {
        "state": "awaiting_approval",
        "steps_done": 6,
        "current_step": None,
        "finished_at": time.time(),
        "result": RunResult(
            model="cut",
            registered_model="ganops-cut",
            version=version,
            metrics={"deploy_score": 0.71, "ssim": 0.66, "psnr": 21.5},
            champion_metrics={"deploy_score": 0.64, "ssim": 0.61, "psnr": 20.9},
            champion_version="2",
            deploy_score=0.71,
            gate_passed=True,
            data_digest="sha256:abc123",
            image="ganops-trainer:test",
            artifacts=artifacts or {},
        ),
    }


class FileLauncher(ScriptedLauncher):
    """A `ScriptedLauncher` kept in a JSON file under an exclusive file lock, so that the
    bot replicas a test starts and the test itself share one pipeline backend, as they
    would share Kubeflow. Every call reads the file, acts, and writes it back."""

    def __init__(self, path: Path, url_base: str | None = None) -> None:
        super().__init__(url_base)
        self.path = path
        self._lock_path = path.with_suffix(".lock")

    @contextlib.contextmanager
    def _shared(self) -> Iterator[None]:
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._load()
                yield
                self._save()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = json.loads(self.path.read_text())
        self.launches = data["launches"]
        self._requests = data["requests"]
        self._runs = {
            k: RunStatus(**{**v, "result": to_run_result(v.get("result"))})
            for k, v in data["runs"].items()
        }
        self._ids = itertools.count(data["next_id"])

    def _save(self) -> None:
        next_id = next(self._ids)
        self._ids = itertools.count(next_id)
        data = {
            "launches": self.launches,
            "requests": self._requests,
            "runs": {k: dataclasses.asdict(v) for k, v in self._runs.items()},
            "next_id": next_id,
        }
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, default=str))
        os.replace(tmp, self.path)

    def launch(self, params: RunParams, request_id: str) -> LaunchResult:
        with self._shared():
            return super().launch(params, request_id)

    def status(self, run_id: str) -> RunStatus:
        with self._shared():
            return super().status(run_id)

    def move(self, run_id: str, **changes: Any) -> RunStatus:
        with self._shared():
            return super().move(run_id, **changes)

    def list_runs(self, limit: int = 20) -> list[RunStatus]:
        with self._shared():
            return super().list_runs(limit)

    def only_run(self) -> str:
        with self._shared():
            return super().only_run()

    def count(self) -> int:
        with self._shared():
            return self.launches
