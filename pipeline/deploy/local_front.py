"""The LocalDeployer's side of the split (`pipeline.deploy.split`): the front process,
started once and kept at one address, and the files it and Prometheus read (`routes.json`,
`targets.json`), written from the server records."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from ganops.pipeline import procs
from ganops.pipeline.deploy import split
from ganops.pipeline.deploy.local_files import (
    ServerRecord,
    free_port,
    get_ok,
    last_line,
    load_record,
    port_is_free,
    read_json,
    write_json,
    write_json_if_changed,
)

FRONT, ROUTES, TARGETS = "front.json", "routes.json", "targets.json"


def publish(
    folder: Path, stable: ServerRecord | None, canary: ServerRecord | None, percent: int
) -> None:
    """The split's routes and Prometheus' file_sd targets (both tracks, told apart by a
    `track` label), from the records; rewritten only when they change."""
    routes = split.Routes(
        stable.url if stable is not None else None,
        canary.url if canary is not None else None,
        percent if canary is not None else 0,
    )
    if split.read_routes(folder / ROUTES) != routes:
        split.write_routes(folder / ROUTES, routes)
    targets = [
        {"targets": [f"{r.host}:{r.port}"], "labels": {"job": "ganops-serve", "track": track}}
        for track, r in (("stable", stable), ("canary", canary))
        if r is not None
    ]
    write_json_if_changed(folder / TARGETS, targets)


class Front:
    """The split process in `folder`, recorded in `front.json` like a server is."""

    def __init__(
        self,
        folder: Path,
        host: str,
        *,
        start_timeout_s: float,
        stop_timeout_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.dir = folder
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.clock = clock

    def record(self) -> ServerRecord | None:
        loaded = load_record(self.dir / FRONT)
        return loaded[0] if loaded is not None and loaded[0].alive else None

    def url(self) -> str | None:
        """Its address, if it runs and answers its own /healthz."""
        front = self.record()
        return front.url if front is not None and get_ok(front.url + "/healthz") else None

    def ensure(self) -> str | None:
        """Start the split unless it runs; None once it answers, else why it did not start.
        It keeps its recorded port where it can, so clients keep their address."""
        if self.url() is not None:
            return None
        front = self.record()
        if front is not None:  # alive but not answering: replace it
            procs.stop_group(front.pid, self.stop_timeout_s)
        data = read_json(self.dir / FRONT)
        port = data.get("port") if isinstance(data, dict) else None
        if not isinstance(port, int) or not port_is_free(self.host, port):
            port = free_port(self.host)
        log_path = self.dir / "front.log"
        # -I: stdlib only, whatever PYTHONPATH or the cwd hold.
        cmd = [sys.executable, "-I", split.__file__, "--host", self.host, "--port", str(port)]
        pid = procs.spawn([*cmd, "--routes", str(self.dir / ROUTES)], log_path, self.dir, {})
        started = time.time()
        record = ServerRecord(
            "split", "", "", pid, port, self.host, str(log_path), started, procs.start_time(pid)
        )
        write_json(self.dir / FRONT, record.as_json())  # adopted by the next call if we die
        deadline = self.clock() + self.start_timeout_s
        while self.clock() < deadline and procs.alive(pid, None):
            if get_ok(record.url + "/healthz"):
                return None
            time.sleep(0.1)
        procs.stop_group(pid, self.stop_timeout_s)
        (self.dir / FRONT).unlink(missing_ok=True)
        return f"the split did not start on port {port}: {last_line(log_path) or 'no answer'}"

    def stop(self) -> None:
        front = self.record()
        if front is not None:
            procs.stop_group(front.pid, self.stop_timeout_s)
        (self.dir / FRONT).unlink(missing_ok=True)
