"""What the tests look at in /proc: which of the processes they started still live."""

from __future__ import annotations

from pathlib import Path


def running_with_arg(arg: str, *also: str) -> list[int]:
    """Live (non-zombie) processes with `arg`, and each of `also`, among their argv items.
    Tests run beside each other: pass something of this test's own (its gates folder), or
    another test's server with the same model URI counts as this one's."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if all(a.encode() in argv for a in (arg, *also)) and state != "Z":
            found.append(int(proc.name))
    return found
