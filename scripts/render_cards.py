"""Render the README's pictures from the bot's real Block Kit builders.

    python scripts/render_cards.py [--out docs/img] [--grid PATH --loss PATH]

Writes run-progress.png (the live run message), results-card.png (the results card with every
metric, the sample grid and the loss curve in its thread), drift-alarm.png (the alarm card
with its score plot), retrain-modal.png (the `/retrain` modal) and app-home.png (the Home tab).
The blocks come from `ganops.bot.blocks.runs` / `results` / `alarms` / `modal` / `home` and the plot
from `ganops.bot.drift.plots`, fed the same views the bot builds; the numbers are those of a local demo
run (relabelled v7 against champion v6). `--grid` / `--loss` take a real run's PNGs (e.g. from
the demo's `shell-files/`); without them the grid comes from `ganops.model.evaluate` on fresh
synthetic data (an untrained champion against an identity challenger, nothing trained) and the
loss curve is drawn from an illustrative history with the pipeline's own plotting function.
"""

from __future__ import annotations

import argparse
import calendar
import io
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

# The repo root (for bot/) and scripts/ (for blockpng/, which only this script uses).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from blockpng.render import Reply, render_message
from blockpng.surfaces import render_home, render_modal

from ganops.bot.blocks import blocks_to_dicts
from ganops.bot.blocks.alarms import AlarmView, alarm_card, alarm_text
from ganops.bot.blocks.home import HomeView, ModelStanding, home_view
from ganops.bot.blocks.modal import ModalOrigin, retrain_modal
from ganops.bot.blocks.results import metrics_reply_text
from ganops.bot.blocks.runs import (
    CardView,
    metrics_table,
    results_card,
    results_card_text,
    run_blocks,
    run_text,
)
from ganops.bot.drift.plots import drift_score_plot
from ganops.bot.ports import Approval, ModelVersionInfo
from ganops.bot.runs.record import RunRow
from ganops.bot.runs.results import ARTIFACTS, FILES_NOTE
from ganops.bot.runs.start import view_of
from ganops.pipeline.ports import RunParams, RunStatus

NOW = float(calendar.timegm((2025, 3, 12, 10, 42, 0)))  # a fixed clock: stable pictures
USERS = {"U_ALICE": "alice", "U_CAROL": "carol"}
RUN_ID = "local-a2cb0ae9e287"
DIGEST = "sha256:ea5845e78d777e938ac9fc459e8b32fdd924844bdefea77b385cc6c876ca7002"
PARAMS = RunParams(model="cut", epochs=5, steps=160, preset="tiny")
CHALLENGER = {
    "deploy_score": 0.0556, "diversity": 0.8674, "diversity_guard": 1.0, "hist_dist": 0.7130,
    "hist_term": 0.2781, "kid": 17.2319, "kid_term": 0.0, "psnr": 14.2498, "ssim": 0.1160,
    "ssim_term": 0.0,
}  # fmt: skip
CHAMPION = {
    "deploy_score": 0.0421, "diversity": 0.8297, "diversity_guard": 1.0, "hist_dist": 0.7798,
    "hist_term": 0.2104, "kid": 30.6807, "kid_term": 0.0, "psnr": 13.6318, "ssim": 0.0857,
    "ssim_term": 0.0,
}  # fmt: skip
MOVED = {"brightness": 3.12, "contrast": 2.47, "saturation": 1.18, "mean_b": 0.82, "noise": 0.3}


def clock(ts: float) -> str:
    return time.strftime("%I:%M %p", time.gmtime(ts)).lstrip("0")


def run_progress() -> Image.Image:
    """The run message mid-training, through the watcher's own `view_of`."""
    row = RunRow(RUN_ID, "req-1", "cut", "U_ALICE", "C_OPS", PARAMS.as_dict(), created_at=NOW)
    status = RunStatus(
        run_id=RUN_ID,
        state="running",
        current_step="train",
        steps_done=2,
        train_step=120,
        train_total=160,
        losses={"D": 0.213, "G_GAN": 0.702, "NCE": 1.774},
        created_at=NOW - 187,
        params=PARAMS.as_dict(),
    )
    view = view_of(row, status, NOW)
    blocks = blocks_to_dicts(run_blocks(view))
    return render_message(blocks, run_text(view), users=USERS, time_label=clock(NOW - 187))


def results(grid: Image.Image, loss: Image.Image) -> Image.Image:
    """The card as `ganops.bot.runs.results.post_results` posts it, and its files as uploaded."""
    view = CardView(
        run_id=RUN_ID,
        model="cut",
        version="7",
        requested_by="U_ALICE",
        metrics=CHALLENGER,
        champion_metrics=CHAMPION,
        champion_version="6",
        deploy_score=CHALLENGER["deploy_score"],
        data_digest=DIGEST,
        data_uri="synthetic",
        image="ganops-trainer:latest",
        files_note=FILES_NOTE,
        gate_passed=True,
        gate_reason="deploy score 0.0556 beats the bar: the champion (version 6) scores 0.0421",
    )
    blocks = blocks_to_dicts(results_card(view, approval_id="Zq3v9rT1bX0kLm2P"))
    table = metrics_reply_text(metrics_table(CHALLENGER, CHAMPION), "6")
    pictures = dict(zip((t for _, t in ARTIFACTS.values()), (grid, loss), strict=True))
    comment = f"Run `{RUN_ID}`: " + "; ".join(pictures)
    replies = [
        Reply(text=table, time_label=clock(NOW)),
        Reply(text=comment, images=pictures, time_label=clock(NOW)),
    ]
    return render_message(
        blocks,
        results_card_text(view),
        users=USERS,
        replies=replies,
        time_label=clock(NOW),
        width=800,  # the grid's eight columns stay legible
    )


def drift_alarm() -> Image.Image:
    """The firing alarm card and the score plot the watcher uploads in its thread."""
    opened = NOW - 12 * 60  # the card was posted then; updated in place since
    view = AlarmView(
        episode_id="drift-cut-v7-3f9a1c2e",
        model="cut",
        version="7",
        state="firing",
        score=2.41,
        peak_score=2.63,
        features=MOVED,
        opened_at=opened,
        updated_at=NOW,
    )
    plot = drift_score_plot(score_history(opened), title="cut v7 drift score")
    reply = Reply(
        images={"Drift score, cut v7, last 3 h": Image.open(io.BytesIO(plot))},
        time_label=clock(opened),
    )
    blocks = blocks_to_dicts(alarm_card(view))
    return render_message(blocks, alarm_text(view), replies=[reply], time_label=clock(opened))


def modal() -> Image.Image:
    """What `/retrain` alone opens."""
    view = retrain_modal(ModalOrigin(channel="C_OPS", trigger_id="t"))
    return render_modal(view.to_dict())


def home() -> Image.Image:
    """carol's Home tab (an approver) while a cyclegan run trains and cut v7 awaits her."""
    row = RunRow("local-5be01c7d93aa", "req-2", "cyclegan", "U_ALICE", "C_OPS",
                 {"model": "cyclegan", "epochs": 3}, created_at=NOW - 95)  # fmt: skip
    status = RunStatus(row.run_id, "running", model="cyclegan", current_step="train",
                       steps_done=2, train_step=40, train_total=120, created_at=NOW - 95)  # fmt: skip
    pending = Approval("Zq3v9rT1bX0kLm2P", RUN_ID, "cut", "7", "models:/ganops-cut/7",
                       "deploy", "U_ALICE", "pending", NOW - 60, NOW + 86400 - 60)  # fmt: skip
    champion = ModelVersionInfo("cut", "6", ("champion",), deploy_score=0.0421)
    challenger = ModelVersionInfo("cut", "7", ("challenger",), deploy_score=0.0556)
    alarm = AlarmView("drift-cut-v6-3f9a1c2e", "cut", "6", "firing", 2.41, 2.63, MOVED,
                      opened_at=NOW - 12 * 60, updated_at=NOW)  # fmt: skip
    view = HomeView(
        user="U_CAROL",
        runs=[view_of(row, status, NOW)],
        approvals=[pending],
        approver=True,
        models=[ModelStanding("cut", champion, challenger), ModelStanding("cyclegan")],
        alarms=[alarm],
    )
    return render_home(home_view(view).to_dict(), users=USERS)


def score_history(opened: float) -> list[tuple[float, float]]:
    """Three hours of minutely scores up to the first post, when the plot is uploaded: calm,
    then the inputs shift and the score stays over 1 for the rule's `for:` before it fires."""
    rng = random.Random(7)
    out = []
    for minute in range(-180, 1):
        t = opened + minute * 60
        rise = 1.9 / (1 + math.exp(-(t - (opened - 420)) / 90))
        out.append((t, max(0.05, 0.38 + rise + rng.gauss(0, 0.06))))
    return out


def fallback_grid() -> Image.Image:
    """A real evaluation grid without training: identity challenger vs untrained champion."""
    import torch

    from ganops.model.config import EvalConfig, NetConfig
    from ganops.model.evaluate import evaluate
    from ganops.model.networks import build_generator
    from ganops.model.synthetic import make_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic(Path(tmp) / "data", n_train=16, n_test=16)
        champion = build_generator(NetConfig(), generator=torch.Generator().manual_seed(0))
        cfg = EvalConfig(num_images=16, grid_images=8)
        return evaluate(torch.nn.Identity(), data, cfg, "cpu", champion=champion.eval()).grid


def fallback_loss() -> Image.Image:
    """The pipeline's loss plot over an illustrative (not trained) history."""
    from ganops.pipeline.steps.train import plot_loss_curve

    rng = random.Random(3)
    history = [
        (s, {
            "D": 0.2 + 1.0 * math.exp(-s / 5) + rng.gauss(0, 0.04),
            "G_GAN": 0.5 + 0.6 * math.exp(-s / 15) + rng.gauss(0, 0.1),
            "NCE": 1.8 + 3.7 * math.exp(-s / 28) + rng.gauss(0, 0.05),
        })
        for s in [1, *range(10, 161, 10)]
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "loss_curve.png"
        plot_loss_curve(history, str(path))
        return Image.open(path).copy()


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--grid", type=Path, help="a run's sample_grid.png")
    parser.add_argument("--loss", type=Path, help="a run's loss_curve.png")
    args = parser.parse_args(argv)
    for given in (args.grid, args.loss):
        if given is not None and not given.is_file():
            print(f"render_cards: no such file: {given}", file=sys.stderr)
            return 2
    os.environ["TZ"] = "UTC"  # the builders print local times; pin them for stable pictures
    time.tzset()
    grid = Image.open(args.grid) if args.grid else fallback_grid()
    loss = Image.open(args.loss) if args.loss else fallback_loss()
    args.out.mkdir(parents=True, exist_ok=True)
    pictures = {
        "run-progress.png": run_progress(),
        "results-card.png": results(grid, loss),
        "drift-alarm.png": drift_alarm(),
        "retrain-modal.png": modal(),
        "app-home.png": home(),
    }
    for name, img in pictures.items():
        size = save(img, args.out / name)
        print(f"{args.out / name}: {img.width}x{img.height}, {size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
