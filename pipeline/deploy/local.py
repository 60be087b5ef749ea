"""LocalDeployer: the model server as a local process on loopback, replaced without a gap,
with a canary beside it behind a local split.

A deploy starts the new version on a fresh port and switches only once its /readyz answers
200; then the old server is stopped. If the new one never gets ready, it is killed and the
old one keeps serving: that is the local rollback. Servers run in their own session, so they
outlive a bot restart, and a restarted bot re-adopts them from their records.

Clients call one stable address, `endpoint()`: the split (`pipeline.deploy.split`), started on
the first deploy and kept, which sends each request to the stable or the canary server by
the routes file. Files in `<state_dir>/serving/`:
- `current.json`: the stable server (pid, port, version); `canary.json`: the canary and its
  percent; `front.json`: the split; `routes.json`: what the split reads;
- `targets.json`: a Prometheus file_sd list of the stable and the canary server;
- `starting.json` names a server not yet ready, `retiring.json` servers being stopped, so that
  the next call stops them if the deployer that started the change was killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ganops.pipeline import procs
from ganops.pipeline.deploy.local_files import (
    ServerRecord,
    env_for,
    free_port,
    get_ok,
    last_line,
    load_record,
    read_json,
    write_json,
)
from ganops.pipeline.deploy.local_front import ROUTES, TARGETS, Front, publish
from ganops.pipeline.ports import CanaryServed, DeployError, DeployResult, Served

__all__ = ["STARTING", "LocalDeployer", "ServerRecord", "default_server_cmd"]

STARTING = "starting.json"  # the server a change is waiting for, until it is ready or dropped
CURRENT, CANARY, RETIRING = "current.json", "canary.json", "retiring.json"


def default_server_cmd() -> list[str]:
    """`ganops serve --model-uri URI --port P`, through this interpreter's own console
    script (or the same CLI module where the script is not installed)."""
    script = Path(sys.executable).with_name("ganops")
    ganops = [str(script)] if script.exists() else [sys.executable, "-m", "ganops.bot.cli"]
    return [*ganops, "serve", "--model-uri", "{model_uri}", "--port", "{port}"]


class LocalDeployer:
    """Implements `pipeline.ports.Deployer` with local model servers behind a local split."""

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
        front_timeout_s: float = 15.0,
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
        self.front = Front(
            self.dir,
            host,
            start_timeout_s=front_timeout_s,
            stop_timeout_s=stop_timeout_s,
            clock=clock,
        )
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
            self._repair()
            return self._deploy(model, version, model_uri, started)

    def set_canary(self, model: str, version: str, model_uri: str, percent: int) -> DeployResult:
        if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
            raise DeployError(f"a canary's share is a whole percent 1..100, not {percent!r}")
        started = self.clock()
        with self._lock, self._file_lock():
            self._repair()
            stable = self._record(CURRENT)
            if stable is not None and stable.model != model:
                raise DeployError(
                    f"the local deployer serves {stable.model}, so it cannot run a canary of "
                    f"{model} beside it; deploy {model} first"
                )
            canary = self._record(CANARY)
            if canary is not None and (canary.model, canary.version) != (model, version):
                self._switch(stable, None, 0, retire=[canary])  # another version's canary
                canary = None
            if percent == 100:
                if canary is None:  # nothing to promote: a plain deploy leaves the same state
                    return self._deploy(model, version, model_uri, started)
                return self._promote(stable, canary, started)
            why = self.front.ensure()  # started or restarted on its port if it died
            if why is not None:
                raise DeployError(f"no canary without the split in front: {why}")
            if canary is None:
                canary, why, log_path = self._launch(model, version, model_uri)
                if canary is None:
                    return self._canary_failed(version, stable, why, log_path, started)
            self._switch(stable, canary, percent, retire=[])
            front = self.endpoint()
        rest = f"v{stable.version} takes the rest" if stable else "nothing else is serving"
        return DeployResult(
            ok=True,
            model_uri=model_uri,
            version=version,
            previous_version=stable.version if stable is not None else None,
            rolled_back=False,
            seconds=self.clock() - started,
            message=f"canary v{version} takes {percent}% of {front} (pid {canary.pid}); {rest}",
        )

    def abort_canary(self, model: str) -> DeployResult:
        started = self.clock()
        with self._lock, self._file_lock():
            self._repair()
            stable = self._record(CURRENT)
            canary = self._record(CANARY)
            if canary is not None and canary.model == model:
                self._switch(stable, None, 0, retire=[canary])
                taken = f"v{stable.version} takes all the traffic" if stable else "none serves"
                message = f"canary v{canary.version} stopped; {taken}"
            else:
                canary, message = None, f"no canary of {model} was running"
        return DeployResult(
            ok=True,
            model_uri=stable.model_uri if stable is not None else "",
            version=stable.version if stable is not None else "",
            previous_version=None,
            rolled_back=canary is not None,
            seconds=self.clock() - started,
            message=message,
        )

    def canary(self, model: str) -> CanaryServed | None:
        loaded = load_record(self.dir / CANARY)
        if loaded is None or loaded[0].model != model or not loaded[0].alive:
            return None
        record = loaded[0]
        stable = self._record(CURRENT)
        stable_version = stable.version if stable is not None and stable.model == model else None
        return CanaryServed(
            model, record.version, record.model_uri, self._percent(), stable_version
        )

    # --- extras for the demo and the CLI --------------------------------------------------

    def serving(self) -> ServerRecord | None:
        """The stable server, if its pid is alive and its /healthz answers."""
        record = self._record(CURRENT)
        return record if record is not None and get_ok(record.url + "/healthz") else None

    def endpoint(self) -> str | None:
        """The address clients should call: the split, or the stable server where the split
        is not running; None when nothing serves."""
        front = self.front.url()
        if front is not None:
            return front
        record = self.serving()
        return record.url if record is not None else None

    def stop(self) -> None:
        """Stop the split and every server and forget them (the demo's clean shutdown)."""
        with self._lock, self._file_lock():
            self._stop_orphan()
            self.front.stop()
            for name in (CANARY, CURRENT):
                record = self._record(name)
                if record is not None:
                    procs.stop_group(record.pid, self.stop_timeout_s)
            for name in (CURRENT, CANARY, TARGETS, ROUTES, RETIRING):
                (self.dir / name).unlink(missing_ok=True)

    # --- changes --------------------------------------------------------------------------

    def _deploy(self, model: str, version: str, model_uri: str, started: float) -> DeployResult:
        old = self.serving()
        record, why, log_path = self._launch(model, version, model_uri)
        if record is None:
            return self._kept_old(version, old, why, log_path, started)
        self._switch(record, None, 0, retire=[self._record(CURRENT), self._record(CANARY)])
        front_failed = self.front.ensure()
        seconds = self.clock() - started
        message = f"ready on {record.url} (pid {record.pid}) after {seconds:.1f} s"
        if front_failed is not None:
            message += f"; clients call it directly: {front_failed}"
        return DeployResult(
            ok=True,
            model_uri=model_uri,
            version=version,
            previous_version=old.version if old is not None and old.model == model else None,
            rolled_back=False,
            seconds=seconds,
            message=message,
        )

    def _promote(
        self, stable: ServerRecord | None, canary: ServerRecord, started: float
    ) -> DeployResult:
        """The canary's server becomes the stable one as it runs: no restart, no gap."""
        self._switch(canary, None, 0, retire=[stable])
        self.front.ensure()  # if it fails, clients still reach the server itself
        old = f", v{stable.version} stopped" if stable is not None else ""
        return DeployResult(
            ok=True,
            model_uri=canary.model_uri,
            version=canary.version,
            previous_version=stable.version if stable is not None else None,
            rolled_back=False,
            seconds=self.clock() - started,
            message=f"canary v{canary.version} promoted: all the traffic on {canary.url}{old}",
        )

    def _switch(
        self,
        stable: ServerRecord | None,
        canary: ServerRecord | None,
        percent: int,
        *,
        retire: Sequence[ServerRecord | None],
    ) -> None:
        """Record the new serving state, route to it, then stop the servers it leaves out.
        Each step leaves files that `_repair` completes if the deployer dies after it."""
        keep = {r.pid for r in (stable, canary) if r is not None}
        doomed = [r for r in retire if r is not None and r.pid not in keep]
        if doomed:
            pids = [{"pid": r.pid, "proc_start": r.proc_start} for r in doomed]
            write_json(self.dir / RETIRING, pids)
        if stable is not None:
            write_json(self.dir / CURRENT, stable.as_json())
        if canary is not None:
            write_json(self.dir / CANARY, canary.as_json(percent=percent))
        else:
            (self.dir / CANARY).unlink(missing_ok=True)
        (self.dir / STARTING).unlink(missing_ok=True)
        publish(self.dir, stable, canary, percent)
        for record in doomed:
            if record.alive:
                procs.stop_group(record.pid, self.stop_timeout_s)
        (self.dir / RETIRING).unlink(missing_ok=True)

    def _repair(self) -> None:
        """Finish what a deployer killed midway left (the lock is ours, so nobody else is
        changing anything): stop servers it was starting or retiring, drop dead records,
        and route by the records that remain."""
        self._stop_orphan()
        stable, canary = self._record(CURRENT), self._record(CANARY)
        if canary is not None and stable is not None and canary.pid == stable.pid:
            canary = None  # killed while promoting: it is the stable one now
        keep = {r.pid for r in (stable, canary) if r is not None}
        retiring = read_json(self.dir / RETIRING)
        for entry in retiring if isinstance(retiring, list) else []:
            pid = entry.get("pid") if isinstance(entry, dict) else None
            if isinstance(pid, int) and pid not in keep and procs.alive(pid, entry["proc_start"]):
                procs.stop_group(pid, self.stop_timeout_s)
        (self.dir / RETIRING).unlink(missing_ok=True)
        if canary is None:
            (self.dir / CANARY).unlink(missing_ok=True)
        publish(self.dir, stable, canary, self._percent() if canary is not None else 0)

    # --- processes ------------------------------------------------------------------------

    def _stop_orphan(self) -> None:
        """A server whose start never finished: its deployer was killed while waiting for
        it (the lock is ours now, so nobody else is). It would hold a port and memory."""
        data = read_json(self.dir / STARTING)
        if isinstance(data, dict):
            pid, proc_start = data.get("pid"), data.get("proc_start")
            if isinstance(pid, int) and procs.alive(pid, proc_start):
                procs.stop_group(pid, self.stop_timeout_s)
        (self.dir / STARTING).unlink(missing_ok=True)

    def _launch(
        self, model: str, version: str, model_uri: str
    ) -> tuple[ServerRecord | None, str, Path]:
        """A new server, ready, or None and why not (it is stopped then). Until a `_switch`
        records it, `starting.json` names it."""
        port = free_port(self.host)
        log_path = self.dir / f"{model}-v{version}-{port}.log"
        pid = self._start(model_uri, port, log_path)
        write_json(self.dir / STARTING, {"pid": pid, "proc_start": procs.start_time(pid)})
        why = self._wait_ready(pid, f"http://{self.host}:{port}")
        if why is not None:
            procs.stop_group(pid, self.stop_timeout_s)
            (self.dir / STARTING).unlink(missing_ok=True)
            return None, why, log_path
        started_at, proc_start = time.time(), procs.start_time(pid)
        record = ServerRecord(
            model, version, model_uri, pid, port, self.host, str(log_path), started_at, proc_start
        )
        return record, "", log_path

    def _start(self, model_uri: str, port: int, log_path: Path) -> int:
        values = {"model_uri": model_uri, "port": str(port), "host": self.host}
        cmd = [part.format(**values) for part in self.server_cmd]
        # The server inherits the bot's environment, plus where MLflow is for models:/ URIs;
        # its own session lets it outlive a bot restart. Relative paths mean the bot's cwd.
        env = env_for(self.mlflow_uri, os.environ)
        return procs.spawn(cmd, log_path, Path.cwd(), env)

    def _wait_ready(self, pid: int, url: str) -> str | None:
        """None once /readyz answers 200; else why not."""
        deadline = self.clock() + self.ready_timeout_s
        while self.clock() < deadline:
            if not procs.alive(pid, None):
                return "the server exited"
            if get_ok(url + "/readyz"):
                return None
            time.sleep(0.2)
        return f"/readyz not ready within {self.ready_timeout_s:.0f} s"

    def _kept_old(
        self, version: str, old: ServerRecord | None, why: str, log_path: Path, started: float
    ) -> DeployResult:
        kept = f"v{old.version} keeps serving on {old.url}" if old else "nothing was serving"
        message = f"v{version} failed its health check ({why}); {kept}"
        return not_ready(version, old, message, log_path, self.clock() - started, old is not None)

    def _canary_failed(
        self, version: str, stable: ServerRecord | None, why: str, log_path: Path, started: float
    ) -> DeployResult:
        kept = f"v{stable.version} keeps all the traffic" if stable else "nothing else serves"
        message = f"canary v{version} failed its health check ({why}) and was removed; {kept}"
        return not_ready(version, stable, message, log_path, self.clock() - started, True)

    # --- state on disk --------------------------------------------------------------------

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """One change at a time across processes (two bots on one state dir, a demo beside them)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "deploy.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _percent(self) -> int:
        loaded = load_record(self.dir / CANARY)
        percent = loaded[1].get("percent") if loaded is not None else None
        return percent if isinstance(percent, int) else 0

    def _record(self, name: str) -> ServerRecord | None:
        """The record in `name` if its process is alive (a reused pid is not ours)."""
        loaded = load_record(self.dir / name)
        return loaded[0] if loaded is not None and loaded[0].alive else None


def not_ready(
    version: str,
    kept: ServerRecord | None,
    message: str,
    log_path: Path,
    seconds: float,
    rolled_back: bool,
) -> DeployResult:
    """The result of a server that did not get ready: `kept` serves on; the failed server's
    last log line says why, in the server's own words."""
    tail = last_line(log_path)
    return DeployResult(
        ok=False,
        model_uri=kept.model_uri if kept is not None else "",
        version=version,
        previous_version=kept.version if kept is not None else None,
        rolled_back=rolled_back,
        seconds=seconds,
        message=f"{message}. Its log ends: {tail}" if tail else message,
    )
