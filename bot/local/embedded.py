"""Embedded defaults for a laptop: a loopback MLflow UI server and a loopback Prometheus.

The bot itself talks to MLflow through the sqlite store in the state dir; the server started
here reads the same store so that a person can open the MLflow UI. Prometheus scrapes the
local model server through a file_sd target list that the LocalDeployer keeps current, and
evaluates ganops' own alert rules (with a short `for:` so a demo sees alarms in seconds).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ganops.bot.local.prometheus import (
    PrometheusServer,
    free_port,
    prometheus_binary,
    rules_with_for,
    start_prometheus,
)

REPO_RULES = Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "rules.yaml"

__all__ = [
    "MlflowServer",
    "PrometheusServer",
    "prometheus_binary",
    "start_local_prometheus",
    "start_mlflow_server",
]


@dataclass
class MlflowServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    def stop(self, timeout: float = 15.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            # The server runs workers in its own process group; end them all.
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)


def start_mlflow_server(state_dir: Path, timeout: float = 90.0) -> MlflowServer:
    """Start `mlflow server` on loopback over the state dir's sqlite store.

    Raises:
        RuntimeError: it exited or did not answer /health in time (with its log's tail).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = state_dir / "mlflow-server.log"
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [
        str(mlflow) if mlflow.exists() else "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{(state_dir / 'mlflow.db').resolve()}",
        "--default-artifact-root",
        str((state_dir / "mlartifacts").resolve()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # The UI needs no background job runner (it would start a dozen worker processes).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=state_dir,
            env=env,
            start_new_session=True,
        )
    server = MlflowServer(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    server.stop()
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
    raise RuntimeError(f"mlflow server did not start:\n{tail}")


def start_local_prometheus(
    state_dir: Path, alert_for: str = "5s", interval: str = "1s"
) -> PrometheusServer:
    """Prometheus on loopback scraping the LocalDeployer's file_sd targets with our rules.

    Raises:
        FileNotFoundError: prometheus is not installed.
        RuntimeError: it did not get ready.
    """
    workdir = state_dir / "prometheus"
    if workdir.exists():
        # Old samples from an earlier demo would keep old alarms alive; start clean.
        shutil.rmtree(workdir / "data", ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    targets = state_dir / "serving" / "targets.json"
    targets.parent.mkdir(parents=True, exist_ok=True)
    if not targets.exists():
        targets.write_text("[]\n")
    rules = rules_with_for(REPO_RULES, workdir / "rules.yaml", alert_for)
    # Check the rules file parses before handing it to Prometheus, for a clearer error.
    yaml.safe_load(rules.read_text())
    return start_prometheus(workdir, rule_files=[rules], file_sd=[targets], interval=interval)
