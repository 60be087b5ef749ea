"""Progress events: how pipeline steps tell a local launcher what they are doing.

Each step appends JSON lines to `<events_dir>/events.jsonl` (local runs only; on Kubeflow the
directory is empty and the run's task details say the same). `fold` turns the lines into the
progress fields of `RunStatus`. The file is append-only and each line is written with one
`write` on an O_APPEND descriptor, so concurrent writers never interleave within a line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganops.pipeline.ports import PIPELINE_STEPS
from ganops.pipeline.progress import step_rate

EVENTS_FILE = "events.jsonl"
MAX_ERROR_CHARS = 4000


def emit(events_dir: str, step: str, event: str, **data: Any) -> None:
    """Append one event; a no-op when `events_dir` is empty (runs on Kubeflow)."""
    if not events_dir:
        return
    record = {"ts": time.time(), "step": step, "event": event, **data}
    line = (json.dumps(record, default=str) + "\n").encode()
    Path(events_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(events_dir) / EVENTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def error_text(exc: BaseException) -> str:
    """The message of `exc`, as the user sees it: no traceback of ours, bounded length. A
    long message (kfp.local's carries the step's whole traceback) keeps its start and its
    end, since the exception line that says what went wrong is the last one."""
    text = str(exc).strip() or type(exc).__name__
    if len(text) <= MAX_ERROR_CHARS:
        return text
    marker = "\n...\n"
    head = (MAX_ERROR_CHARS - len(marker)) // 3
    tail = MAX_ERROR_CHARS - len(marker) - head
    return text[:head] + marker + text[-tail:]


@contextmanager
def step_scope(events_dir: str, step: str) -> Iterator[dict[str, Any]]:
    """Bracket one step with started / finished (or failed) events.

    Yields a dict the step fills with its facts (digest, metrics, version...); they travel
    with the `finished` event and end up in the run's result.
    """
    facts: dict[str, Any] = {}
    emit(events_dir, step, "started")
    try:
        yield facts
    except BaseException as exc:
        emit(events_dir, step, "failed", error=error_text(exc))
        raise
    emit(events_dir, step, "finished", facts=facts)


class ProgressThrottle:
    """Emits train progress at most every `interval` seconds, plus the last step."""

    def __init__(self, events_dir: str, interval: float = 0.5) -> None:
        self.events_dir = events_dir
        self.interval = interval
        self._last: float | None = None

    def __call__(self, step: int, total: int, losses: Mapping[str, float]) -> None:
        now = time.monotonic()
        if step < total and self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        clean = {k: float(v) for k, v in losses.items()}
        emit(self.events_dir, "train", "progress", train_step=step, train_total=total, losses=clean)


@dataclass
class Progress:
    """What the events of one run say so far."""

    current_step: str | None = None
    steps_done: int = 0
    train_step: int | None = None
    train_total: int | None = None
    train_rate: float | None = None  # steps per second, recently; None until measured
    losses: dict[str, float] = field(default_factory=dict)
    failed_step: str | None = None
    error: str | None = None
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    final: dict[str, Any] | None = None
    updated_at: float | None = None
    started_at: float | None = None


def read_events(events_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete event line; a torn last line (a writer killed mid-write) is skipped."""
    path = Path(events_dir) / EVENTS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def fold(events: list[dict[str, Any]]) -> Progress:
    """Reduce a run's events, in order, to its progress."""
    progress = Progress()
    done: set[str] = set()
    samples: list[tuple[float, int]] = []
    for ev in events:
        step, kind = ev.get("step", ""), ev.get("event", "")
        progress.updated_at = ev.get("ts", progress.updated_at)
        if progress.started_at is None:
            progress.started_at = progress.updated_at
        if kind == "started":
            progress.current_step = step
        elif kind == "finished":
            done.add(step)
            progress.facts[step] = dict(ev.get("facts") or {})
            if progress.current_step == step:
                progress.current_step = None
        elif kind == "failed":
            progress.failed_step, progress.error = step, ev.get("error")
        elif kind == "progress":
            progress.train_step = ev.get("train_step")
            progress.train_total = ev.get("train_total")
            if isinstance(ev.get("ts"), float | int) and isinstance(ev.get("train_step"), int):
                samples.append((float(ev["ts"]), ev["train_step"]))
            progress.losses = dict(ev.get("losses") or {})
        elif kind == "final":
            progress.final = ev
    progress.steps_done = sum(1 for s in PIPELINE_STEPS if s in done)
    progress.train_rate = step_rate(samples)
    return progress
