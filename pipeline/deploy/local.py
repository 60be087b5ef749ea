"""LocalDeployer: the model server as a local process on loopback, replaced without a gap.

A deploy starts the new version on a fresh port and switches only once its /readyz answers
200; then the old server is stopped. If the new one never gets ready, it is killed and the
old one keeps serving: that is the local rollback. Servers run in their own session, so they
outlive a bot restart; `<state_dir>/serving/current.json` records pid, port and version, and a
restarted bot re-adopts the server if the pid is alive and /healthz answers.
`serving/targets.json` is a Prometheus file_sd list that follows the current port;
`serving/starting.json` names a server not yet ready, so that the next deploy stops it if
the deployer that started it was killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ganops.pipeline import procs
from ganops.pipeline.ports import DeployResult, Served

STARTING = "starting.json"  # the server a deploy is waiting for, until it is ready or dropped


def default_server_cmd() -> list[str]:
    """`ganops serve --model-uri URI --port P`, through this interpreter's own console
    script (or the same CLI module where the script is not installed)."""
    script = Path(sys.executable).with_name("ganops")
    ganops = [str(script)] if script.exists() else [sys.executable, "-m", "ganops.bot.cli"]
    return [*ganops, "serve", "--model-uri", "{model_uri}", "--port", "{port}"]


@dataclass(frozen=True)
class ServerRecord:
    model: str
    version: str
    model_uri: str
    pid: int
    port: int
    host: str
    log: str
    started_at: float
    proc_start: str | None = None  # the kernel's start time: a reused pid is not ours

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class LocalDeployer:
    """Implements `pipeline.ports.Deployer` with one local model server."""

    def __init__(
        self,
        state_dir: Path,
        mlflow_uri: str | None = None,
        *,
        server_cmd: Sequence[str] | None = None,
        serve_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        ready_timeout_s: float = 180.0,
        stop_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dir = state_dir / "serving"
        self.mlflow_uri = mlflow_uri
        self.server_cmd = list(server_cmd) if server_cmd is not None else default_server_cmd()
        # Extra flags from the bot's settings (input capture), after the command's own.
        self.server_cmd += list(serve_args)
        self.host = host
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.clock = clock
        self._lock = threading.Lock()

    # --- the Deployer protocol ------------------------------------------------------------

    def current(self, model: str) -> str | None:
        served = self.served(model)
        return served.version if served is not None else None

    def served(self, model: str) -> Served | None:
        # current.json is written only once the new server is ready, so a recorded server
        # that answers /healthz has finished its rollout.
        record = self.serving()
        if record is None or record.model != model:
            return None
        return Served(model, record.version, record.model_uri, settled=True)

    def deploy(self, model: str, version: str, model_uri: str) -> DeployResult:
        started = self.clock()
        with self._lock, self._file_lock():
            self._stop_orphan()
            old = self.serving()
            port = _free_port(self.host)
            log_path = self.dir / f"{model}-v{version}-{port}.log"
            pid = self._start(model_uri, port, log_path)
            _write_json(self.dir / STARTING, {"pid": pid, "proc_start": procs.start_time(pid)})
            why = self._wait_ready(pid, f"http://{self.host}:{port}")
            if why is not None:
                procs.stop_group(pid, self.stop_timeout_s)
                (self.dir / STARTING).unlink(missing_ok=True)
                return self._kept_old(version, old, why, log_path, started)
            record = ServerRecord(
                model,
                version,
                model_uri,
                pid,
                port,
                self.host,
                str(log_path),
                time.time(),
                procs.start_time(pid),
            )
            self._save(record)
            (self.dir / STARTING).unlink(missing_ok=True)
            if old is not None:
                procs.stop_group(old.pid, self.stop_timeout_s)
        seconds = self.clock() - started
        return DeployResult(
            ok=True,
            model_uri=model_uri,
            version=version,
            previous_version=old.version if old is not None and old.model == model else None,
            rolled_back=False,
            seconds=seconds,
            message=f"ready on {record.url} (pid {pid}) after {seconds:.1f} s",
        )

    # --- extras for the demo and the CLI --------------------------------------------------

    def serving(self) -> ServerRecord | None:
        """The recorded server, if its pid is alive and its /healthz answers."""
        record = self._load()
        if record is None or not procs.alive(record.pid, record.proc_start):
            return None
        return record if _get_ok(record.url + "/healthz") else None

    def stop(self) -> None:
        """Stop the current server and forget it (the demo's clean shutdown)."""
        with self._lock, self._file_lock():
            record = self._load()
            if record is not None and procs.alive(record.pid, record.proc_start):
                procs.stop_group(record.pid, self.stop_timeout_s)
            for name in ("current.json", "targets.json"):
                (self.dir / name).unlink(missing_ok=True)

    # --- processes ------------------------------------------------------------------------

    def _stop_orphan(self) -> None:
        """A server whose deploy never finished: its deployer was killed while waiting for
        it (the lock is ours now, so nobody else is). It would hold a port and memory."""
        try:
            data = json.loads((self.dir / STARTING).read_text())
        except (OSError, ValueError):
            return
        pid, proc_start = data.get("pid"), data.get("proc_start")
        if isinstance(pid, int) and procs.alive(pid, proc_start):
            procs.stop_group(pid, self.stop_timeout_s)
        (self.dir / STARTING).unlink(missing_ok=True)

    def _start(self, model_uri: str, port: int, log_path: Path) -> int:
        values = {"model_uri": model_uri, "port": str(port), "host": self.host}
        cmd = [part.format(**values) for part in self.server_cmd]
        # The server inherits the bot's environment, plus where MLflow is for models:/ URIs;
        # its own session lets it outlive a bot restart. Relative paths mean the bot's cwd.
        env = _env_for(self.mlflow_uri, os.environ)
        return procs.spawn(cmd, log_path, Path.cwd(), env)

    def _wait_ready(self, pid: int, url: str) -> str | None:
        """None once /readyz answers 200; else why not."""
        deadline = self.clock() + self.ready_timeout_s
        while self.clock() < deadline:
            if not procs.alive(pid, None):
                return "the server exited"
            if _get_ok(url + "/readyz"):
                return None
            time.sleep(0.2)
        return f"/readyz not ready within {self.ready_timeout_s:.0f} s"

    def _kept_old(
        self, version: str, old: ServerRecord | None, why: str, log_path: Path, started: float
    ) -> DeployResult:
        tail = _last_line(log_path)
        kept = f"v{old.version} keeps serving on {old.url}" if old else "nothing was serving"
        message = f"v{version} failed its health check ({why}); {kept}"
        if tail:
            message += f". Its log ends: {tail}"
        return DeployResult(
            ok=False,
            model_uri=old.model_uri if old is not None else "",
            version=version,
            previous_version=old.version if old is not None else None,
            rolled_back=old is not None,
            seconds=self.clock() - started,
            message=message,
        )

    # --- state on disk --------------------------------------------------------------------

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """One deploy at a time across processes (two bots on one state dir, a demo beside them)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "deploy.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _load(self) -> ServerRecord | None:
        try:
            data = json.loads((self.dir / "current.json").read_text())
            data.pop("url", None)  # derived; written for readers such as the demo
            return ServerRecord(**data)
        except (OSError, ValueError, TypeError, AttributeError):
            return None

    def _save(self, record: ServerRecord) -> None:
        _write_json(self.dir / "current.json", {**asdict(record), "url": record.url})
        target = [{"targets": [f"{record.host}:{record.port}"], "labels": {"job": "ganops-serve"}}]
        _write_json(self.dir / "targets.json", target)


def _write_json(path: Path, data: object) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _get_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _last_line(path: Path, limit: int = 300) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def _env_for(mlflow_uri: str | None, base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    if mlflow_uri:
        env["MLFLOW_TRACKING_URI"] = mlflow_uri
    return env
