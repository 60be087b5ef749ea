"""Detached worker processes: start them, tell whether they still live, stop them.

A worker outlives the process that launched it (its own session), so liveness is judged by
pid *and* start time: after a reboot or pid reuse, a stored pid may name someone else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

# Popen handles of the workers this process started, so that finished ones are reaped
# (a zombie would still answer kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn(argv: Sequence[str], log_path: Path, cwd: Path, env: dict[str, str]) -> int:
    """Start `argv` in a new session with stdout/stderr to `log_path`; return its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so split after its ")".
    return stat.rsplit(")", 1)[1].split()[19]


def alive(pid: int | None, started: str | None) -> bool:
    """Whether `pid` runs and is the same process that was started at `started`."""
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return _kill0(pid)  # no procfs (macOS): best effort
    state = stat.rsplit(")", 1)[1].split()[0]
    if state in {"Z", "X"}:
        return False
    return started is None or start_time(pid) == started


def stop_group(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group led by `pid`; SIGKILL whatever is left after `grace` s."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive(pid, None):
        time.sleep(0.1)
    # The step subprocesses share the group: make sure none outlives its worker.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    alive(pid, None)  # reap it if it is our child


def _kill0(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
