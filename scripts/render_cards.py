"""Render the README's pictures from the bot's real Block Kit builders and a real run.

    python scripts/render_cards.py --from-state .ganops/demo   # after `make demo`: snapshot, render
    python scripts/render_cards.py                             # render from the stored snapshot
    python scripts/render_cards.py --check                     # exit 1 if docs/img is stale

What is drawn comes from a real run, never from an invented one: `--from-state` reads a demo's
state folder (the local launcher's runs and their events, the bot's store) and writes a
snapshot to `docs/img/source/`: the reviewed run's params, metrics, champion metrics, gate
reason and data digest (`run.json`), its sample grid and loss curve as the pipeline made
them, the training progress at three quarters of the run (from its events), and the drift
alarm the demo raised. Without `--from-state` the snapshot is read back, so the pictures can
be re-rendered after a builder changes without training again.

Writes run-progress.png, results-card.png (the card, every metric and the pictures in its
thread), drift-alarm.png, canary-thread.png (the deliberately broken challenger's canary:
its first step, then the rollback the analysis decided, with the comparison and its plot, as
the demo's canaries table recorded them), retrain-modal.png and app-home.png, and
`blocks.sha256.json`: a hash
of each picture's Block Kit payload. `tests/scripts/test_render_cards.py` recomputes those
hashes from today's builders, so a builder change without a re-render fails the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import math
import os
import random
import sqlite3
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

# scripts/ (for blockpng/, which only this script uses).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from blockpng.render import Reply, render_message
from blockpng.surfaces import render_home, render_modal

from ganops.bot.blocks import blocks_to_dicts
from ganops.bot.blocks.alarms import AlarmView, alarm_card, alarm_text
from ganops.bot.blocks.approvals import decided_card, deploy_result_blocks, deploy_result_text
from ganops.bot.blocks.canary import CanaryView, canary_blocks, canary_text
from ganops.bot.blocks.home import HomeView, ModelStanding, home_view
from ganops.bot.blocks.modal import ModalOrigin, retrain_modal
from ganops.bot.blocks.ops import deploy_request_card
from ganops.bot.blocks.results import metrics_reply_text
from ganops.bot.blocks.runs import (
    CardView,
    metrics_table,
    results_card,
    results_card_text,
    run_blocks,
    run_text,
)
from ganops.bot.canary.live import threshold_lines
from ganops.bot.canary.plot import comparison_png
from ganops.bot.canary.thresholds import CanaryThresholds
from ganops.bot.drift.plots import drift_score_plot
from ganops.bot.ports import Approval, DeployResult, ModelVersionInfo
from ganops.bot.runs.record import RunRow
from ganops.bot.runs.results import ARTIFACTS, FILES_NOTE
from ganops.bot.runs.start import view_of
from ganops.pipeline.events import fold, read_events
from ganops.pipeline.ports import RunStatus

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
SNAPSHOT = IMG / "source"
DIGESTS = "blocks.sha256.json"
PICTURES = frozenset(
    {"run-progress.png", "results-card.png", "drift-alarm.png", "canary-thread.png",
     "retrain-modal.png", "app-home.png"}
)  # fmt: skip
USERS = {"U_ALICE": "alice", "U_CAROL": "carol"}
APPROVAL_ID = "Zq3v9rT1bX0kLm2P"  # opaque, as the bot makes them


class NoRealRun(Exception):
    """The state folder (or the snapshot) holds no run that can be pictured."""


@dataclass(frozen=True)
class Snapshot:
    """What the pictures show, taken from a real run."""

    run: dict[str, Any]  # run_id, requested_by, params, created_at, finished_at
    result: dict[str, Any]  # the RunResult fields the card shows
    progress: dict[str, Any]  # the run's progress at ~75% of training
    alarm: dict[str, Any] | None  # the demo's drift alarm, if it raised one
    canary: dict[str, Any] | None  # the demo's rolled-back canary and its approval, if any
    grid: Image.Image = field(compare=False)  # the run's sample grid, as the pipeline drew it
    loss: Image.Image = field(compare=False)  # its loss curve


# --- taking a snapshot from a demo's state -------------------------------------------------


def snapshot_from_state(state_dir: Path) -> Snapshot:
    """The newest reviewed run of a demo state folder that trained a model that learned."""
    from ganops.pipeline.launch.local import LocalLauncher

    mlflow_uri = f"sqlite:///{state_dir / 'mlflow.db'}"
    launcher = LocalLauncher(state_dir, mlflow_uri, "ganops-trainer:latest")
    runs = [
        s
        for s in launcher.list_runs(50)
        if s.result is not None
        and s.result.version
        and s.result.champion_version  # judged against a champion, not the bootstrap
        and s.result.gate_passed
        and all(Path(p).is_file() for p in s.result.artifacts.values())
    ]
    if not runs:
        raise NoRealRun(f"{state_dir}: no run that beat a champion and kept its pictures")
    status = max(runs, key=lambda s: s.created_at or 0.0)
    result = status.result
    assert result is not None
    row = _bot_run(state_dir, status.run_id)
    events = read_events(state_dir / "runs" / status.run_id / "events")
    snap = Snapshot(
        run={
            "run_id": status.run_id,
            "requested_by": row.get("requested_by") or "U_ALICE",
            "params": dict(status.params or {}),
            "created_at": status.created_at,
        },
        result={
            "model": result.model,
            "version": result.version,
            "metrics": dict(result.metrics),
            "champion_metrics": dict(result.champion_metrics or {}),
            "champion_version": result.champion_version,
            "deploy_score": result.deploy_score,
            "gate_passed": result.gate_passed,
            "gate_reason": result.gate_reason,
            "data_digest": result.data_digest,
            "image": result.image,
        },
        progress=_progress_at(events, 0.75),
        alarm=_last_alarm(state_dir),
        canary=_rolled_back_canary(state_dir),
        grid=Image.open(result.artifacts["sample_grid"]).copy(),
        loss=Image.open(result.artifacts["loss_curve"]).copy(),
    )
    return snap


def _bot_run(state_dir: Path, run_id: str) -> dict[str, Any]:
    with sqlite3.connect(state_dir / "ganops.db") as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return dict(row) if row else {}


def _progress_at(events: list[dict[str, Any]], share: float) -> dict[str, Any]:
    """The run's progress as the watcher saw it once training passed `share` of its steps."""
    for i, ev in enumerate(events):
        total = ev.get("train_total") or 0
        if ev.get("event") == "progress" and total and ev.get("train_step", 0) >= share * total:
            p = fold(events[: i + 1])
            return {
                "current_step": p.current_step,
                "steps_done": p.steps_done,
                "train_step": p.train_step,
                "train_total": p.train_total,
                "losses": p.losses,
                "started_at": p.started_at,
                "at": p.updated_at,
            }
    raise NoRealRun("the run's events hold no training progress")


def _last_alarm(state_dir: Path) -> dict[str, Any] | None:
    with sqlite3.connect(state_dir / "ganops.db") as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM alarms ORDER BY opened_at DESC LIMIT 1").fetchone()
    if row is None:
        return None
    alarm = dict(row)
    for key in ("features",):
        if isinstance(alarm.get(key), str):
            alarm[key] = json.loads(alarm[key])
    return alarm


def _rolled_back_canary(state_dir: Path) -> dict[str, Any] | None:
    """The first canary the analysis rolled back (the demo's broken challenger), with its
    approval's decision."""
    with sqlite3.connect(state_dir / "ganops.db") as db:
        db.row_factory = sqlite3.Row
        row = db.execute(
            "SELECT c.*, a.decided_by, a.decided_at, a.requested_by FROM canaries c"
            " JOIN approvals a ON a.approval_id = c.canary_id"
            " WHERE c.state = 'rolled_back' AND c.ended_by = 'ganops'"
            " ORDER BY c.started_at LIMIT 1"
        ).fetchone()
    if row is None:
        return None
    canary = dict(row)
    for key in ("steps", "judgement"):
        canary[key] = json.loads(canary[key]) if canary.get(key) else None
    return canary


def save_snapshot(snap: Snapshot, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"run": snap.run, "result": snap.result, "progress": snap.progress, "alarm": snap.alarm,
           "canary": snap.canary}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    save(snap.grid, folder / "sample_grid.png")
    save(snap.loss, folder / "loss_curve.png")


def load_snapshot(folder: Path) -> Snapshot:
    try:
        doc = json.loads((folder / "run.json").read_text())
        grid = Image.open(folder / "sample_grid.png").copy()
        loss = Image.open(folder / "loss_curve.png").copy()
    except FileNotFoundError as e:
        raise NoRealRun(
            f"no snapshot of a real run in {folder} ({Path(str(e.filename)).name})"
        ) from e
    return Snapshot(doc["run"], doc["result"], doc["progress"], doc.get("alarm"),
                    doc.get("canary"), grid, loss)  # fmt: skip


# --- the messages, from the real builders --------------------------------------------------


@dataclass(frozen=True)
class Message:
    blocks: list[dict[str, Any]]
    text: str
    time: float


def clock(ts: float) -> str:
    return time.strftime("%I:%M %p", time.gmtime(ts)).lstrip("0")


def _row(snap: Snapshot) -> RunRow:
    run = snap.run
    return RunRow(
        run["run_id"], "req-1", snap.result["model"], run["requested_by"], "C_OPS",
        run["params"], created_at=float(run.get("created_at") or snap.progress["started_at"]),
    )  # fmt: skip


def progress_message(snap: Snapshot) -> Message:
    """The run message mid-training, through the watcher's own `view_of`."""
    p = snap.progress
    status = RunStatus(
        run_id=snap.run["run_id"],
        state="running",
        current_step=p["current_step"],
        steps_done=p["steps_done"],
        train_step=p["train_step"],
        train_total=p["train_total"],
        losses=p["losses"],
        created_at=p["started_at"],
        params=snap.run["params"],
    )
    view = view_of(_row(snap), status, p["at"])
    return Message(blocks_to_dicts(run_blocks(view)), run_text(view), p["started_at"])


def card_view(snap: Snapshot) -> CardView:
    r = snap.result
    return CardView(
        run_id=snap.run["run_id"],
        model=r["model"],
        version=r["version"],
        requested_by=snap.run["requested_by"],
        metrics=r["metrics"],
        champion_metrics=r["champion_metrics"] or None,
        champion_version=r["champion_version"],
        deploy_score=r["deploy_score"],
        data_digest=r["data_digest"],
        data_uri=str(snap.run["params"].get("data") or "") or None,
        image=r["image"],
        files_note=FILES_NOTE,
        gate_passed=r["gate_passed"],
        gate_reason=r["gate_reason"],
    )


def results_message(snap: Snapshot) -> Message:
    view = card_view(snap)
    blocks = blocks_to_dicts(results_card(view, approval_id=APPROVAL_ID))
    return Message(blocks, results_card_text(view), snap.progress["at"])


def metrics_reply(snap: Snapshot) -> str:
    r = snap.result
    return metrics_reply_text(
        metrics_table(r["metrics"], r["champion_metrics"] or None), r["champion_version"]
    )


def alarm_view(snap: Snapshot) -> AlarmView | None:
    a = snap.alarm
    if not a:
        return None
    return AlarmView(
        episode_id=a["episode_id"],
        model=a["model"],
        version=str(a["version"]),
        state="firing",  # as first posted; the demo's card has resolved since
        score=float(a.get("peak_score") or a.get("score") or 0.0),
        peak_score=float(a.get("peak_score") or a.get("score") or 0.0),
        features=a.get("features") or {},
        opened_at=float(a["opened_at"]),
        updated_at=float(a["opened_at"]),
    )


def alarm_message(snap: Snapshot) -> Message | None:
    view = alarm_view(snap)
    if view is None:
        return None
    return Message(blocks_to_dicts(alarm_card(view)), alarm_text(view), view.opened_at)


def _limits(c: Mapping[str, Any]) -> tuple[str, ...]:
    """The limits the canary was judged with (stored with its analysis), else the defaults."""
    stored = (c.get("judgement") or {}).get("limits")
    return tuple(stored) if stored else threshold_lines(CanaryThresholds())


def canary_messages(snap: Snapshot) -> tuple[Message, list[Message]] | None:
    """The broken challenger's deploy card (decided) and its thread: the deploy result that
    started the canary, the first step's post, the rollback with the stored analysis."""
    c = snap.canary
    if not c:
        return None
    steps = tuple(int(p) for p in c["steps"])
    a = Approval(c["canary_id"], None, c["model"], c["version"], c["model_uri"], "deploy",
                 c["requested_by"], "approved", c["started_at"], c["started_at"] + 86400,
                 approvers=(c["decided_by"],), decided_by=c["decided_by"],
                 decided_at=c["decided_at"])  # fmt: skip
    card = deploy_request_card(c["model"], c["version"], c["stable_version"], c["requested_by"],
                               c["canary_id"], note="It loads and answers /readyz like any model.")  # fmt: skip
    started = DeployResult(True, c["model_uri"], c["version"], c["stable_version"], False, 0.0,
                           f"canary at {steps[0]}% of the traffic", canary_percent=steps[0])  # fmt: skip
    card_blocks = decided_card(blocks_to_dicts(card), a, started)
    view = CanaryView(canary_id=c["canary_id"], model=c["model"], version=c["version"],
                      stable_version=c["stable_version"], steps=steps, step=0, moment="step",
                      next_at=c["started_at"] + 12, thresholds=_limits(c))  # fmt: skip
    ended = dataclasses.replace(view, moment="rolled_back", judgement=c["judgement"],
                         reason=c["reason"], next_at=None)  # fmt: skip
    thread = [
        Message(
            blocks_to_dicts(deploy_result_blocks(a, started)),
            deploy_result_text(a, started),
            c["started_at"],
        ),
        Message(blocks_to_dicts(canary_blocks(view)), canary_text(view), c["started_at"]),
        Message(blocks_to_dicts(canary_blocks(ended)), canary_text(ended), c["ended_at"]),
    ]
    return Message(card_blocks, f"Deploy {c['model']} v{c['version']}?", c["started_at"]), thread


def modal_payload() -> dict[str, Any]:
    view = retrain_modal(ModalOrigin(channel="C_OPS", trigger_id="t"))
    return dict(view.to_dict())


def home_payload(snap: Snapshot) -> dict[str, Any]:
    """carol's Home tab (an approver) while the reviewed version awaits her."""
    r, now = snap.result, snap.progress["at"]
    pending = Approval(APPROVAL_ID, snap.run["run_id"], r["model"], r["version"],
                       f"models:/ganops-{r['model']}/{r['version']}", "deploy",
                       snap.run["requested_by"], "pending", now, now + 86400)  # fmt: skip
    champion = ModelVersionInfo(r["model"], r["champion_version"], ("champion",),
                                deploy_score=r["champion_metrics"].get("deploy_score"))  # fmt: skip
    challenger = ModelVersionInfo(r["model"], r["version"], ("challenger",),
                                  deploy_score=r["deploy_score"])  # fmt: skip
    alarm = alarm_view(snap)
    view = HomeView(
        user="U_CAROL",
        runs=[],
        approvals=[pending],
        approver=True,
        models=[ModelStanding(r["model"], champion, challenger), ModelStanding("cyclegan")],
        alarms=[alarm] if alarm else [],
    )
    return dict(home_view(view).to_dict())


def payloads(snap: Snapshot) -> dict[str, Any]:
    """Each picture's Block Kit payload: what the hash in `blocks.sha256.json` covers."""
    out: dict[str, Any] = {}
    for name, msg in (
        ("run-progress.png", progress_message(snap)),
        ("results-card.png", results_message(snap)),
        ("drift-alarm.png", alarm_message(snap)),
    ):
        if msg is not None:
            out[name] = {"blocks": msg.blocks, "text": msg.text}
    out["results-card.png"]["thread"] = metrics_reply(snap)
    canary = canary_messages(snap)
    if canary is not None:
        card, thread = canary
        out["canary-thread.png"] = {"blocks": card.blocks, "text": card.text,
                                    "thread": [{"blocks": m.blocks, "text": m.text} for m in thread]}  # fmt: skip
    out["retrain-modal.png"] = modal_payload()
    out["app-home.png"] = home_payload(snap)
    return out


def digests(snap: Snapshot) -> dict[str, str]:
    return {
        name: hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        for name, doc in payloads(snap).items()
    }


# --- drawing -------------------------------------------------------------------------------


def render(snap: Snapshot) -> dict[str, Image.Image]:
    pictures: dict[str, Image.Image] = {}
    msg = progress_message(snap)
    pictures["run-progress.png"] = render_message(
        msg.blocks, msg.text, users=USERS, time_label=clock(msg.time)
    )
    msg = results_message(snap)
    files = dict(zip((t for _, t in ARTIFACTS.values()), (snap.grid, snap.loss), strict=True))
    replies = [
        Reply(text=metrics_reply(snap), time_label=clock(msg.time)),
        Reply(
            text=f"Run `{snap.run['run_id']}`: " + "; ".join(files),
            images=files,
            time_label=clock(msg.time),
        ),
    ]
    pictures["results-card.png"] = render_message(
        msg.blocks, msg.text, users=USERS, replies=replies, time_label=clock(msg.time),
        width=800,  # the grid's eight columns stay legible
    )  # fmt: skip
    alarm = alarm_message(snap)
    if alarm is not None:
        view = alarm_view(snap)
        assert view is not None
        plot = drift_score_plot(
            score_history(view.opened_at, view.peak_score),
            title=f"{view.model} v{view.version} drift score",
        )
        reply = Reply(
            images={f"Drift score, {view.model} v{view.version}": Image.open(io.BytesIO(plot))},
            time_label=clock(view.opened_at),
        )
        pictures["drift-alarm.png"] = render_message(
            alarm.blocks, alarm.text, replies=[reply], time_label=clock(alarm.time)
        )
    canary = canary_messages(snap)
    if canary is not None and snap.canary is not None:
        card, thread = canary
        judged = snap.canary["judgement"] or {}
        chart = comparison_png(judged, f"{snap.canary['model']} v{snap.canary['version']} vs "
                                      f"v{snap.canary['stable_version']}")  # fmt: skip
        replies = [Reply(blocks=m.blocks, text=m.text, time_label=clock(m.time)) for m in thread]
        if chart is not None:
            replies.append(Reply(images={"Canary vs stable": Image.open(io.BytesIO(chart))},
                                 time_label=clock(thread[-1].time)))  # fmt: skip
        users = {**USERS, str(snap.canary["requested_by"]): "ops"}
        pictures["canary-thread.png"] = render_message(
            card.blocks, card.text, users=users, replies=replies, time_label=clock(card.time)
        )
    pictures["retrain-modal.png"] = render_modal(modal_payload())
    pictures["app-home.png"] = render_home(home_payload(snap), users=USERS)
    return pictures


def score_history(opened: float, peak: float) -> list[tuple[float, float]]:
    """An hour of scores before the alarm was posted, shaped like the demo's: calm, then the
    inputs shift and the score stays over 1 for the rule's `for:` before it fires. The
    demo's Prometheus is gone when this runs, so the curve is drawn to the alarm's own peak."""
    rng = random.Random(7)
    out = []
    for step in range(-60, 1):
        t = opened + step * 60
        rise = (peak - 0.4) / (1 + math.exp(-(t - (opened - 420)) / 90))
        out.append((t, max(0.05, 0.4 + rise + rng.gauss(0, 0.04))))
    return out


def save(img: Image.Image, path: Path, budget: int = 280_000) -> int:
    """Save as PNG; as a 256-colour palette only if full colour would be over `budget`."""
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    if buf.tell() > budget:
        buf = io.BytesIO()
        img.quantize(256, dither=Image.Dither.NONE).save(buf, "PNG", optimize=True)
    path.write_bytes(buf.getvalue())
    return len(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMG)
    parser.add_argument("--from-state", type=Path, help="a demo's state folder (.ganops/demo)")
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT, help="where the snapshot is")
    parser.add_argument("--check", action="store_true", help="exit 1 if the pictures are stale")
    args = parser.parse_args(argv)
    os.environ["TZ"] = "UTC"  # the builders print local times; pin them for stable pictures
    time.tzset()
    try:
        if args.from_state:
            snap = snapshot_from_state(args.from_state)
            save_snapshot(snap, args.snapshot)
        snap = load_snapshot(args.snapshot)
    except NoRealRun as e:
        print(f"render_cards: {e}; run `make demo`, then "
              "`python scripts/render_cards.py --from-state .ganops/demo`", file=sys.stderr)  # fmt: skip
        return 2
    want = digests(snap)
    if args.check:
        have = _stored_digests(args.out)
        stale = sorted(n for n in want if have.get(n) != want[n])
        for name in stale:
            print(f"render_cards: {args.out / name} is stale", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    pictures = render(snap)
    for name, img in pictures.items():
        size = save(img, args.out / name)
        print(f"{args.out / name}: {img.width}x{img.height}, {size // 1024} KB")
    for name in PICTURES - set(pictures):  # e.g. no drift alarm in this run: no old picture
        (args.out / name).unlink(missing_ok=True)
    (args.out / DIGESTS).write_text(json.dumps(want, indent=2, sort_keys=True) + "\n")
    return 0


def _stored_digests(folder: Path) -> Mapping[str, str]:
    try:
        return dict(json.loads((folder / DIGESTS).read_text()))
    except FileNotFoundError:
        return {}


if __name__ == "__main__":
    raise SystemExit(main())
