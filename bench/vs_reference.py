"""Training throughput: ours against the reference CUT and CycleGAN trainers, in one run.

The references are the papers' code, unpatched: taesungp/contrastive-unpaired-translation at
b3ac297 and junyanz/pytorch-CycleGAN-and-pix2pix at 2a7afba (`--ref`, default `.gpubench/ref`
or `../shared/gpubench/ref`; see that folder's README). Each case runs the reference's
`train.py` in a fresh process, then ours (`TrainSession`, also in a fresh process, so no
compile cache or dynamic-shape state carries from one case to the next) at the same config on
the same data: the full preset (the papers' networks: lsgan, instance norm, a 3-layer PatchGAN,
CUT's antialiased G and D and NCE on B), resize to the training size, random flip, our
checkpoints every 50 steps as in a real run.

Both sides are timed the same way, by the parent, from the lines each process prints:
- `img_s`: images per second over whole training iterations (data, step, checkpoints), wall
  clock between progress lines, the first lines (warm-up, compilation) dropped; the reference's
  lines are its own "(epoch: E, iters: I" ones, as `../shared/gpubench/analyze.py` reads them;
- `first_step_s`: from the process's launch to the end of its first training step: imports,
  data, building, compilation, autotuning. Ours reports its first step; the reference reports
  every `every` steps, so its figure is its first line less `every - 1` steps at its steady rate.

FLOPs per image (`flops_per_image`) are those of the faithful model: `torch.utils.flop_counter`
over one whole training step (forward and backward of every network: convolutions, including
the blur pools' depthwise ones, and matmuls), run on the meta device, divided by the batch. With
CUDA they are turned into achieved TFLOP/s and a fraction of a bf16 matmul peak measured on the
same GPU.

Cases: on the CPU, "tiny" (32 px, ngf/ndf 16, 6 resnet blocks, batch 8) and "full" (256 px,
ngf/ndf 64, 9 blocks, batch 1). With CUDA, full at batch 1 and 8, and ours alone at batch 32.
`--compile-mode` sets ours' `TrainConfig.compile_mode`: "reduce-overhead" (or "max-autotune")
captures CUDA graphs; the default ("default") does not, and stays so until this bench has
measured the graphs on a GPU.

Prints one JSON object. Goals: >= 1.3x on the CPU, >= 2.5x on a GPU, >= 30% of bf16 peak.
Both trainers run alternately, `--rounds` times per case (3 by default); the figures are
medians, and the ratio is the median of the rounds' ratios.

Usage: bench/vs_reference.py [--ref DIR] [--device auto|cpu|cuda] [--quick] [--rounds N]
       [--compile-mode default|reduce-overhead|max-autotune]
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
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
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
) -> tuple[Run, str]:
    """Run the reference trainer in a fresh process; returns its images/s (None if it printed
    too few lines), its estimated time to the first step, and the tail of its output."""
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
    launched = time.perf_counter()
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
    img_s, first = rate(rows), None
    if rows and img_s:  # its first line comes after `every` steps: take back all but one
        first = rows[0][0] - launched - (case.every - 1) * case.batch / img_s
    return Run(img_s, first), "\n".join(tail)


def config(model: str, case: Case, *, steps: int, compile_mode: str = "default") -> TrainConfig:
    net = preset("full", model, image_size=case.image_size, ngf=case.width, ndf=case.width,
                 n_blocks=case.blocks)  # fmt: skip
    # The references resize to the training size (load_size = crop_size): no zoom-and-crop.
    return TrainConfig(net=net, steps=steps, batch_size=case.batch, lr=2e-4, load_scale=1.0,
                       log_every=case.every, compile_mode=compile_mode)  # fmt: skip


_OUR_LINE = re.compile(r"^ganops-step (\d+) (\d+)$")


@dataclass(frozen=True)
class Run:
    img_s: float | None
    first_step_s: float | None


def ours(
    model: str, case: Case, *, data: Path, device: torch.device, work: Path, compile_mode: str
) -> Run:
    """Our trainer in a fresh process (`--worker`), timed from its progress lines."""
    spec = {"model": model, "case": dataclasses.asdict(case), "data": str(data),
            "device": str(device), "out": str(work / f"ours-{model}-{case.name}"),
            "compile_mode": compile_mode}  # fmt: skip
    args = [sys.executable, "-u", str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    rows: list[tuple[float, int, int]] = []
    launched = time.perf_counter()
    first: float | None = None
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        assert p.stdout is not None
        for line in p.stdout:
            now, match = time.perf_counter(), _OUR_LINE.match(line.strip())
            if match:
                first = now - launched if first is None else first
                rows.append((now, 0, int(match.group(2))))
    return Run(rate(rows), first)


def worker(spec: dict[str, object]) -> int:
    """The child side of `ours`: one training run, a line per progress event."""
    case = Case(**spec["case"])  # type: ignore[arg-type]
    cfg = config(str(spec["model"]), case, steps=case.iters, compile_mode=str(spec["compile_mode"]))
    device = torch.device(str(spec["device"]))
    session = TrainSession(
        cfg, Path(str(spec["data"])), device, NullTracker(), Path(str(spec["out"]))
    )

    def progress(event: ProgressEvent) -> None:
        print(f"ganops-step {event.step} {event.step * case.batch}", flush=True)

    session.progress = progress
    session.run(resume=False)
    return 0


def compare(
    model: str,
    case: Case,
    *,
    rounds: int,
    ref: Path,
    data: Path,
    device: torch.device,
    work: Path,
    compile_mode: str,
) -> dict[str, object]:
    """Both trainers, alternating for `rounds` rounds so that a machine that speeds up or slows
    down during the run hits both alike; the figures are medians, the ratio the median of the
    rounds' ratios."""
    refs: list[Run] = []
    ours_: list[Run] = []
    ratios: list[float] = []
    tail = ""
    for _ in range(rounds):
        theirs = Run(None, None)
        if case.reference:
            theirs, tail = reference(model, case, ref=ref, data=data, device=device.type,
                                     work=work)  # fmt: skip
            refs.append(theirs)
        mine = ours(model, case, data=data, device=device, work=work, compile_mode=compile_mode)
        ours_.append(mine)
        if theirs.img_s and mine.img_s:
            ratios.append(mine.img_s / theirs.img_s)
    row: dict[str, object] = {
        "case": case.name,
        "model": model,
        "image_size": case.image_size,
        "ngf": case.width,
        "blocks": case.blocks,
        "batch": case.batch,
        "rounds": rounds,
        "reference_img_s": _median([r.img_s for r in refs], 3),
        "ours_img_s": _median([r.img_s for r in ours_], 3),
        "reference_first_step_s": _median([r.first_step_s for r in refs], 1),
        "ours_first_step_s": _median([r.first_step_s for r in ours_], 1),
    }
    if ratios:
        row["ratio"] = round(statistics.median(ratios), 2)
        row["ratios"] = [round(r, 2) for r in ratios]
        row["goal_met"] = statistics.median(ratios) >= GOALS[device.type]
    elif case.reference:
        row["reference_tail"] = tail
    return row


def _median(values: list[float | None], digits: int) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), digits) if known else None


def flops_per_image(model: str, case: Case) -> float:
    """FLOPs of one whole training step (every forward and backward) of the faithful model,
    per image: counted on the meta device, so no arithmetic runs and any machine can count."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = torch.device("meta")
    cfg = config(model, case, steps=1)
    trainer = make_trainer(cfg, dataclasses.replace(step_options(cfg, meta), compile=False))
    batch = torch.empty(case.batch, 3, case.image_size, case.image_size, device=meta)
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
    parser.add_argument("--compile-mode", choices=COMPILE_MODES, default="default",
                        help="ours' torch.compile mode; reduce-overhead/max-autotune: CUDA graphs")  # fmt: skip
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one of ours' runs, in a child
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
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
                              device=device, work=work, compile_mode=args.compile_mode)  # fmt: skip
                our_rate = row["ours_img_s"]
                flops = flops_per_image(model, case)
                row["flops_per_image"] = flops
                if kind == "cuda" and isinstance(our_rate, float):
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
        "compile_mode": args.compile_mode,
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
