"""The shell adapter's output side: what the bot posts, as terminal text.

`Transcript` gets every change from `LocalSlack`, prints messages, updates and ephemerals
readably (progress updates as one line), numbers the buttons so they can be typed, and saves
uploaded files under the state dir with their paths printed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from ganops.bot.local.shell_render import Button, mrkdwn, render
from ganops.bot.local.slack import Change, LocalSlack

# The clock alone changes a progress line; the shell prints it only when something else did.
_ELAPSED = re.compile(r" · elapsed [^·]*$")


class TrackingExecutor(ThreadPoolExecutor):
    """Runs the lazy listeners and knows how many are still going (for `/wait`)."""

    def __init__(self, max_workers: int = 8) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="lazy")
        self._count = 0
        self._count_lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._count_lock:
            self._count += 1

        def tracked() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                with self._count_lock:
                    self._count -= 1

        return super().submit(tracked)

    @property
    def busy(self) -> int:
        with self._count_lock:
            return self._count


class Transcript:
    def __init__(self, out: TextIO, files_dir: Path) -> None:
        self.out = out
        self.files_dir = files_dir
        self.slack: LocalSlack | None = None  # set once the local Slack is up
        self.names: dict[str, str] = {}
        self.buttons: dict[int, tuple[str, str, Button]] = {}  # n -> (channel, ts, button)
        self._shown: dict[str, tuple[list[str], tuple[Button, ...]]] = {}  # ts -> (lines, buttons)
        self._lines: dict[str, str] = {}  # ts -> the last progress line printed
        self._lock = threading.RLock()

    def say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def on_change(self, change: Change) -> None:
        self.show(change.message, change.kind)  # posted | updated | ephemeral

    def show(self, message: dict[str, Any], kind: str) -> None:
        lines, buttons = render(message, self.names)
        with self._lock:
            ts = str(message.get("ts", ""))
            before = self._shown.get(ts)
            if kind == "updated" and before is not None and before[0] == lines:
                return
            self._shown[ts] = (lines, tuple(buttons))
            # A progress update is one line (its buttons keep their numbers); a message
            # that gained or lost buttons is shown whole.
            if kind == "updated" and before is not None and before[1] == tuple(buttons):
                self._progress(ts, mrkdwn(message.get("text", ""), self.names).strip())
                return
            self._forget_buttons(ts)
            numbered = [self._number(message, b) for b in buttons]
            head = {
                "posted": "bot" if not message.get("thread_ts") else "bot (in thread)",
                "updated": "bot (updated)",
                "ephemeral": f"bot (only @{self.names.get(message.get('user', ''), 'you')} sees this)",
                "ack": "bot (only you see this)",
            }[kind]
            self.say(f"── {head} ──")
            for line in lines:
                self.say(f"  {line}")
            if numbered:
                self.say("  " + "  ".join(f"[{n}] {b.text}" for n, b in numbered))
            for f in message.get("files") or []:
                self.say(f"  📎 {f.get('title') or f.get('name')}: {self._save(f)}")

    def _progress(self, ts: str, line: str) -> None:
        """One line per real change: a line that differs only in its clock is skipped."""
        key = _ELAPSED.sub("", line)
        if self._lines.get(ts) != key:
            self._lines[ts] = key
            self.say(f"  ↻ {line}")

    def _number(self, message: dict[str, Any], button: Button) -> tuple[int, Button]:
        n = max(self.buttons, default=0) + 1
        self.buttons[n] = (str(message.get("channel")), str(message.get("ts")), button)
        return n, button

    def _forget_buttons(self, ts: str) -> None:
        for n in [n for n, (_, t, _) in self.buttons.items() if t == ts]:
            del self.buttons[n]

    def _save(self, file: dict[str, Any]) -> Path:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        path = self.files_dir / f"{file['id']}-{file.get('name') or 'file'}"
        assert self.slack is not None, "files come only through the local Slack"
        path.write_bytes(self.slack.file_bytes(file["id"]))
        return path.resolve()

    def pick(self, choice: str) -> tuple[str, str, Button]:
        with self._lock:
            if choice.isdigit() and int(choice) in self.buttons:
                return self.buttons[int(choice)]
            wanted = choice.strip().lower()
            for n in sorted(self.buttons, reverse=True):  # the newest card first
                button = self.buttons[n][2]
                if wanted in (button.text.lower(), button.action_id.lower()):
                    return self.buttons[n]
        raise ValueError(f"no button {choice!r} (type its number, or /help)")
