"""What the tests look at in /proc: which of the processes they started still live."""

from __future__ import annotations

from pathlib import Path


def running_with_arg(arg: str) -> list[int]:
    """Live (non-zombie) processes with `arg` as one of their argv items."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if arg.encode() in argv and state != "Z":
            found.append(int(proc.name))
    return found
