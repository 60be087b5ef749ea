"""Training throughput: ours against the reference CUT and CycleGAN trainers, in one run.

The references are the papers' code, unpatched: taesungp/contrastive-unpaired-translation at
b3ac297 and junyanz/pytorch-CycleGAN-and-pix2pix at 2a7afba (`--ref`, default `.gpubench/ref`
or `../shared/gpubench/ref`; see that folder's README). Each case runs the reference's
`train.py` in a subprocess, then our `TrainSession` at the same config on the same data:
lsgan, instance norm, a 3-layer PatchGAN, CUT's antialiased sampling and NCE on B, resize to
the training size, random flip, our checkpoints every 50 steps as in a real run.

Throughput is images per second over whole training iterations (data, step, checkpoints), wall
clock between progress lines, the first lines (warm-up, compilation) dropped; the reference is
timed from its own "(epoch: E, iters: I" lines the same way as `../shared/gpubench/analyze.py`.

Cases: on the CPU, "tiny" (32 px, ngf/ndf 16, 6 resnet blocks, batch 8) and "full" (256 px,
ngf/ndf 64, 9 blocks, batch 1). With CUDA, full at batch 1 and 8, and ours alone at batch 32
for the FLOP utilisation: FLOPs per image are counted with `torch.utils.flop_counter` over one
whole training step (forward and backward of every network, convolutions and matmuls) and
divided by the batch; the peak is a bf16 matmul measured on the same GPU.

Prints one JSON object. Goals: >= 1.3x on the CPU, >= 2.5x on a GPU, >= 30% of bf16 peak.
Both trainers run alternately, `--rounds` times per case (3 by default); the figures are
medians, and the ratio is the median of the rounds' ratios.

Usage: bench/vs_reference.py [--ref DIR] [--device auto|cpu|cuda] [--quick] [--rounds N]
       (CPU: about 20 minutes on 2 cores at 3 rounds; --quick runs the tiny cases only)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganops.model.config import TrainConfig, preset
from ganops.model.data import make_synthetic
from ganops.model.tracking import NullTracker
from ganops.model.train import ProgressEvent, TrainSession, step_options
from ganops.model.trainers import make_trainer

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = {
    "cut": ("cut", "b3ac297708dfb6f7589d04662277e53c0d579c27"),
    "cyclegan": ("cyclegan", "2a7afba2895d52556dd5dfe07e8555ef657ced6f"),
}
GOALS = {"cpu": 1.3, "cuda": 2.5}
GOAL_PEAK_FRACTION = 0.30
SKIP = 2  # progress lines dropped as warm-up, on both sides
_REF_LINE = re.compile(r"\(epoch: (\d+), iters: (\d+),")


@dataclass(frozen=True)
class Case:
    name: str
    image_size: int
    width: int  # ngf = ndf
    blocks: int
    batch: int
    iters: int  # training iterations per side
    every: int  # iterations between progress lines
    reference: bool = True


CPU_CASES = (
    Case("tiny", 32, 16, 6, 8, iters=60, every=5),
    Case("full", 256, 64, 9, 1, iters=10, every=1),
)
CUDA_CASES = (
    Case("full-b1", 256, 64, 9, 1, iters=120, every=10),
    Case("full-b8", 256, 64, 9, 8, iters=50, every=5),
    Case("full-b32", 256, 64, 9, 32, iters=30, every=3, reference=False),
)


def rate(rows: list[tuple[float, int, int]]) -> float | None:
    """Images per second from (time, epoch, images) rows, warm-up dropped; the longest run of
    rows within one epoch counts (a reference resets its image count each epoch)."""
    rows = rows[SKIP:]
    best: list[tuple[float, int, int]] = []
    for epoch in sorted({r[1] for r in rows}):
        same = [r for r in rows if r[1] == epoch]
        if len(same) > len(best):
            best = same
    if len(best) < 2 or best[-1][0] <= best[0][0]:
        return None
    return (best[-1][2] - best[0][2]) / (best[-1][0] - best[0][0])


def reference(
    model: str, case: Case, *, ref: Path, data: Path, device: str, work: Path
) -> tuple[float | None, str]:
    """Run the reference trainer; returns its images/s (None if it printed too few lines) and
    the tail of its output."""
    tree, _ = REFERENCES[model]
    args = [
        sys.executable, "-u", "train.py", "--dataroot", str(data), "--name", f"{model}-{case.name}",
        "--checkpoints_dir", str(work / "ref-ck"), "--no_html",
        "--display_freq", "100000000", "--save_latest_freq", "100000000",
        "--save_epoch_freq", "100000", "--n_epochs", "1", "--n_epochs_decay", "0",
        "--load_size", str(case.image_size), "--crop_size", str(case.image_size),
        "--ngf", str(case.width), "--ndf", str(case.width), "--netG", f"resnet_{case.blocks}blocks",
        "--batch_size", str(case.batch), "--print_freq", str(case.every * case.batch),
        "--max_dataset_size", str(case.iters * case.batch),
        "--model", "cut" if model == "cut" else "cycle_gan",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ref.parent / "stubs"), "PYTHONUNBUFFERED": "1"}
    if model == "cut":
        # CUT takes its device and display flags; upstream CycleGAN picks CUDA when it sees it.
        args += ["--CUT_mode", "CUT", "--display_id", "0"]
        args += ["--gpu_ids", "0" if device == "cuda" else "-1"]
    elif device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    rows: list[tuple[float, int, int]] = []
    tail: list[str] = []
    with subprocess.Popen(
        args, cwd=ref / tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter()
            tail = [*tail[-7:], line.rstrip()]
            match = _REF_LINE.search(line)
            if match:
                rows.append((now, int(match.group(1)), int(match.group(2))))
    return rate(rows), "\n".join(tail)


def config(model: str, case: Case, *, steps: int) -> TrainConfig:
    net = preset("full", model, image_size=case.image_size, ngf=case.width, ndf=case.width,
                 n_blocks=case.blocks)  # fmt: skip
    # The references resize to the training size (load_size = crop_size): no zoom-and-crop.
    return TrainConfig(net=net, steps=steps, batch_size=case.batch, lr=2e-4, load_scale=1.0,
                       log_every=case.every)  # fmt: skip


def ours(model: str, case: Case, *, data: Path, device: torch.device, work: Path) -> float | None:
    cfg = config(model, case, steps=case.iters)
    rows: list[tuple[float, int, int]] = []

    def progress(event: ProgressEvent) -> None:
        rows.append((time.perf_counter(), 0, event.step * case.batch))

    session = TrainSession(cfg, data, device, NullTracker(), work / f"ours-{model}-{case.name}")
    session.progress = progress
    session.run(resume=False)
    return rate(rows)


def compare(
    model: str, case: Case, *, rounds: int, ref: Path, data: Path, device: torch.device, work: Path
) -> dict[str, object]:
    """Both trainers, alternating for `rounds` rounds so that a machine that speeds up or slows
    down during the run hits both alike; the figures are medians, the ratio the median of the
    rounds' ratios."""
    refs: list[float] = []
    ours_: list[float] = []
    ratios: list[float] = []
    tail = ""
    for _ in range(rounds):
        ref_rate = None
        if case.reference:
            ref_rate, tail = reference(model, case, ref=ref, data=data, device=device.type,
                                       work=work)  # fmt: skip
        our_rate = ours(model, case, data=data, device=device, work=work)
        refs += [ref_rate] if ref_rate else []
        ours_ += [our_rate] if our_rate else []
        if ref_rate and our_rate:
            ratios.append(our_rate / ref_rate)
    row: dict[str, object] = {
        "case": case.name,
        "model": model,
        "image_size": case.image_size,
        "ngf": case.width,
        "blocks": case.blocks,
        "batch": case.batch,
        "rounds": rounds,
        "reference_img_s": round(statistics.median(refs), 3) if refs else None,
        "ours_img_s": round(statistics.median(ours_), 3) if ours_ else None,
    }
    if ratios:
        row["ratio"] = round(statistics.median(ratios), 2)
        row["ratios"] = [round(r, 2) for r in ratios]
        row["goal_met"] = statistics.median(ratios) >= GOALS[device.type]
    elif case.reference:
        row["reference_tail"] = tail
    return row


def flops_per_image(model: str, case: Case, device: torch.device) -> float:
    """FLOPs of one whole training step (every forward and backward), per image."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = config(model, case, steps=1)
    trainer = make_trainer(cfg, dataclasses.replace(step_options(cfg, device), compile=False))
    batch = torch.rand(case.batch, 3, case.image_size, case.image_size, device=device) * 2 - 1
    trainer.train_step(batch, batch)  # CUT builds its feature head on the first step
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(batch, batch)
    return counter.get_total_flops() / case.batch


def matmul_peak_tflops(device: torch.device) -> float:
    """What this GPU's bf16 matmul reaches: the peak that the utilisation is quoted against."""
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    start, n = time.perf_counter(), 20
    for _ in range(n):
        a @ a
    torch.cuda.synchronize()
    return 2 * 8192**3 * n / (time.perf_counter() - start) / 1e12


def default_ref() -> Path:
    for candidate in (ROOT / ".gpubench" / "ref", ROOT.parent / "shared" / "gpubench" / "ref"):
        if (candidate / "cut" / "train.py").is_file():
            return candidate
    return ROOT / ".gpubench" / "ref"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", type=Path, default=default_ref(),
                        help="folder with the reference trees cut/ and cyclegan/ (and ../stubs)")  # fmt: skip
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--quick", action="store_true", help="CPU: the tiny cases only")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating runs of both trainers per case (median)")  # fmt: skip
    args = parser.parse_args(argv)
    if not (args.ref / "cut" / "train.py").is_file():
        parser.error(f"no reference trainers under {args.ref}: see ../shared/gpubench/README.md")
    kind = args.device
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(kind)
    cases = CUDA_CASES if kind == "cuda" else CPU_CASES[:1] if args.quick else CPU_CASES
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="ganops-vsref-") as tmp:
        work = Path(tmp)
        for size in sorted({c.image_size for c in cases}):
            count = max(c.iters * c.batch for c in cases if c.image_size == size)
            make_synthetic(work / f"data{size}", n_train=count, n_test=1, image_size=size)
        for case in cases:
            data = work / f"data{case.image_size}"
            for model in ("cut", "cyclegan"):
                row = compare(model, case, rounds=args.rounds, ref=args.ref, data=data,
                              device=device, work=work)  # fmt: skip
                our_rate = row["ours_img_s"]
                if kind == "cuda" and isinstance(our_rate, float):
                    flops = flops_per_image(model, case, device)
                    row["flops_per_image"] = flops
                    row["achieved_tflops"] = round(our_rate * flops / 1e12, 1)
                results.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    report: dict[str, object] = {
        "benchmark": "vs_reference",
        "device": torch.cuda.get_device_name()
        if kind == "cuda"
        else platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "references": {m: sha for m, (_, sha) in REFERENCES.items()},
        "goal_ratio": GOALS[kind],
        "results": results,
    }
    if kind == "cuda":
        peak = matmul_peak_tflops(device)
        best = max((float(r.get("achieved_tflops", 0.0)) for r in results), default=0.0)  # type: ignore[arg-type]
        report.update(
            bf16_matmul_peak_tflops=round(peak, 1),
            best_peak_fraction=round(best / peak, 3),
            goal_peak_fraction=GOAL_PEAK_FRACTION,
        )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
