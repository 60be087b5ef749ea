"""How much the local pipeline costs around the real work.

Runs the whole CT pipeline once through `LocalLauncher` (kfp.local, one subprocess per step)
on tiny synthetic data, and prints one JSON object:
- `overhead_s`: wall time from launch() to the final state, minus the time spent inside the
  train and evaluate steps (goal: under 30 s);
- `first_status_update_s`: from launch() to the first status that differs from the launch
  state, and `first_step_event_s`: to the first step's `started` event;
- per-step times and the gaps between steps (subprocess start-up, imports).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

from ganops.pipeline.events import read_events
from ganops.pipeline.launch.local import LocalLauncher
from ganops.pipeline.ports import RunParams

PARAMS = RunParams(steps=10, synthetic_n=8, batch_size=2, image_size=32)
POLL_S = 0.05


def step_times(events: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """step -> {start, end, seconds} from its started / finished (or failed) events."""
    times: dict[str, dict[str, float]] = {}
    for ev in events:
        entry = times.setdefault(ev["step"], {})
        if ev["event"] == "started":
            entry["start"] = ev["ts"]
        elif ev["event"] in {"finished", "failed", "final"}:
            entry["end"] = ev["ts"]
    for entry in times.values():
        if "start" in entry and "end" in entry:
            entry["seconds"] = entry["end"] - entry["start"]
    return times


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK = re.compile(
    r"^(\d\d):(\d\d):(\d\d\.\d+) - INFO - (?:Executing task '([^']+)'|Task '([^']+)' finished)"
)


def task_times(log: str, day_start: float) -> dict[str, dict[str, float]]:
    """task -> {start, end} (unix seconds) from kfp.local's log lines in the worker log."""
    times: dict[str, dict[str, float]] = {}
    for line in _ANSI.sub("", log).splitlines():
        match = _TASK.match(line)
        if match is None:
            continue
        h, m, sec, started, finished = match.groups()
        ts = day_start + int(h) * 3600 + int(m) * 60 + float(sec)
        times.setdefault(started or finished, {})["start" if started else "end"] = ts
    return times


def split_overhead(
    steps: dict[str, dict[str, float]], tasks: dict[str, dict[str, float]]
) -> dict[str, float]:
    """Where the time outside the steps goes: before a step reports (process start, imports),
    after it reports (outputs, interpreter exit), and between tasks (kfp.local itself)."""
    before = after = 0.0
    for task, t in tasks.items():
        step = {"gate-pass": "gate", "gate-reject": "gate"}.get(task, task)
        s = steps.get(step, {})
        if "start" in t and "end" in t and "start" in s and "end" in s:
            before += s["start"] - t["start"]
            after += t["end"] - s["end"]
    ordered = sorted((t["start"], t.get("end", t["start"])) for t in tasks.values() if "start" in t)
    between = sum(max(0.0, b[0] - a[1]) for a, b in itertools.pairwise(ordered))
    return {
        "task_start_to_step_s": round(before, 2),
        "step_end_to_task_end_s": round(after, 2),
        "between_tasks_s": round(between, 2),
    }


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ganops-bench-") as tmp:
        state = Path(tmp)
        launcher = LocalLauncher(state, f"sqlite:///{state / 'mlflow.db'}", "ganops-trainer:bench")
        began = time.time()
        launched = launcher.launch(PARAMS, "bench")
        launch_s = time.time() - began
        first_update = None
        initial = launcher.status(launched.run_id)
        while True:
            st = launcher.status(launched.run_id)
            if first_update is None and (st.state, st.current_step) != (
                initial.state,
                initial.current_step,
            ):
                first_update = time.time() - began
            if st.final:
                break
            time.sleep(POLL_S)
        wall = (st.finished_at or time.time()) - began
        events = read_events(state / "runs" / launched.run_id / "events")
        log = (state / "runs" / launched.run_id / "worker.log").read_text()
    steps = step_times(events)
    midnight = time.mktime((*time.localtime(began)[:3], 0, 0, 0, 0, 0, -1))
    tasks = task_times(log, midnight)
    inside = sum(steps.get(s, {}).get("seconds", 0.0) for s in ("train", "evaluate"))
    first_event = min((e["ts"] for e in events), default=began) - began
    report = {
        "state": st.state,
        "wall_s": round(wall, 2),
        "train_and_evaluate_s": round(inside, 2),
        "overhead_s": round(wall - inside, 2),
        "overhead_goal_s": 30,
        "launch_call_s": round(launch_s, 3),
        "first_status_update_s": None if first_update is None else round(first_update, 3),
        "first_step_event_s": round(first_event, 2),
        "steps_s": {k: round(v.get("seconds", 0.0), 2) for k, v in steps.items()},
        "overhead_split": split_overhead(steps, tasks),
        "params": PARAMS.as_dict(),
    }
    print(json.dumps(report))
    return 0 if st.state in {"awaiting_approval", "gated"} else 1


if __name__ == "__main__":
    raise SystemExit(main())
