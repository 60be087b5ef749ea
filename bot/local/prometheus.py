"""A real Prometheus on loopback: Debian's /usr/bin/prometheus on a free port.

Used by the demo, the shell adapter's embedded defaults and the tests.

`start_prometheus(workdir, targets=[...], rule_files=[...])` writes a config with a 1 s scrape
and evaluation interval, starts the server, waits until /-/ready answers and returns a handle
whose `stop()` ends it (SIGTERM, then SIGKILL). `rules_with_for()` writes a copy of a rules
file with every alert's `for:` replaced, so that alerts that need minutes in production fire
within seconds in a demo or a test. `tests/conftest.py` wraps it in the `prometheus_factory`
fixture.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS = "/usr/bin/prometheus"
REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "manifests" / "monitoring" / "rules.yaml"  # present in a source checkout


def prometheus_binary() -> str | None:
    """The prometheus executable, or None when it is not installed."""
    if os.access(PROMETHEUS, os.X_OK):
        return PROMETHEUS
    return shutil.which("prometheus")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def terminate(process: subprocess.Popen[Any], timeout: float = 10.0) -> int:
    """SIGTERM a child, SIGKILL it if it outlives `timeout`; its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return int(process.returncode)


def rules_with_for(src: Path, dst: Path, duration: str = "5s") -> Path:
    """Copy the rules file `src` to `dst` with every alerting rule's `for:` (and
    `keep_firing_for:`, where set) set to `duration`."""
    doc = yaml.safe_load(src.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = duration
            if "keep_firing_for" in rule:
                rule["keep_firing_for"] = duration
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dst


def write_config(
    path: Path,
    targets: Sequence[str] = (),
    rule_files: Sequence[Path] = (),
    file_sd: Sequence[Path] = (),
    job: str = "ganops-serving",
    interval: str = "1s",
) -> Path:
    """A prometheus.yml scraping `targets` ("host:port") and/or file_sd lists as `job`."""
    scrape: dict[str, Any] = {"job_name": job, "scrape_interval": interval}
    scrape["scrape_timeout"] = interval
    if targets:
        scrape["static_configs"] = [{"targets": list(targets)}]
    if file_sd:
        scrape["file_sd_configs"] = [{"files": [str(p) for p in file_sd], "refresh_interval": "1s"}]
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [scrape] if targets or file_sd else [],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class PrometheusServer:
    """A running Prometheus; `url` is its base URL (http://127.0.0.1:PORT)."""

    url: str
    workdir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (raises on a bad query or HTTP error)."""
        data = _get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        return list(data["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """Every pending or firing alert, as /api/v1/alerts lists them."""
        return list(_get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"])

    def wait_for(
        self, promql: str, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Poll `promql` until `check(result)` holds; raise TimeoutError with the last result."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if check(result):
                return result
            time.sleep(0.5)
        raise TimeoutError(f"{promql!r} not as expected after {timeout:.0f} s; last: {result}")

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait, then SIGKILL; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        terminate(self.process, timeout)

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_prometheus(
    workdir: Path,
    targets: Sequence[str] = (),
    rule_files: Sequence[Path] = (),
    file_sd: Sequence[Path] = (),
    interval: str = "1s",
    ready_timeout: float = 60.0,
) -> PrometheusServer:
    """Start Prometheus scraping `targets` with `rule_files`; return once it is ready.

    Raises:
        FileNotFoundError: prometheus is not installed.
        RuntimeError: it exited or did not get ready in time (with its log's tail).
    """
    binary = prometheus_binary()
    if binary is None:
        raise FileNotFoundError("prometheus is not installed (apt-get install prometheus)")
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(
        workdir / "prometheus.yml", targets, rule_files, file_sd, interval=interval
    )
    last_error = ""
    for attempt in range(3):  # the free port can be taken between probing and binding
        port = free_port()
        log_path = workdir / f"prometheus-{attempt}.log"
        cmd = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        server = PrometheusServer(f"http://127.0.0.1:{port}", workdir, proc, log_path)
        if _wait_ready(server, ready_timeout):
            return server
        server.stop()
        last_error = server.log_tail()
        if "address already in use" not in last_error:
            break
    raise RuntimeError(f"prometheus did not get ready:\n{last_error}")


def _wait_ready(server: PrometheusServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
    if data.get("status") != "success":
        raise RuntimeError(f"Prometheus answered {data}")
    return data
