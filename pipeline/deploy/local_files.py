"""The LocalDeployer's records on disk and the small helpers around them: one JSON file per
record, each replaced atomically, so a deployer killed midway leaves whole files behind."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ganops.pipeline import procs


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

    @property
    def alive(self) -> bool:
        return procs.alive(self.pid, self.proc_start)

    def as_json(self, **extra: object) -> dict[str, Any]:
        return {**asdict(self), "url": self.url, **extra}  # url: for readers such as the demo


def load_record(path: Path) -> tuple[ServerRecord, dict[str, Any]] | None:
    """The record in `path` and the fields it holds besides a ServerRecord's, or None."""
    data = read_json(path)
    if not isinstance(data, dict):
        return None
    data.pop("url", None)  # derived
    names = set(ServerRecord.__dataclass_fields__)
    extra = {k: data.pop(k) for k in list(data) if k not in names}
    try:
        return ServerRecord(**data), extra
    except TypeError:
        return None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: object) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def write_json_if_changed(path: Path, data: object) -> None:
    """Readers that watch the file (the split, Prometheus) reload only on a real change."""
    if read_json(path) != data:
        write_json(path, data)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def get_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def last_line(path: Path, limit: int = 300) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def env_for(mlflow_uri: str | None, base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    if mlflow_uri:
        env["MLFLOW_TRACKING_URI"] = mlflow_uri
    return env
