"""`train(cfg, data, device, tracker, out_dir)`: the training loop around model/trainers.py.

The loop owns what the steps do not: data on the device, the deterministic batch order,
logging, progress, checkpoints and resume, DDP and the final bundle. The caller picks the
device once (`pick_device`), opens the tracker's run and, under torchrun, joins the process
group (`model.distributed.setup`); `train` then finds its rank with `distributed.current()`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganops.model import batch_fit, distributed, norm_stats
from ganops.model.batches import Batches, TrainError, load_size
from ganops.model.bundle import save_bundle
from ganops.model.checkpoint import (
    CheckpointError,
    checkpoint_path,
    from_checkpoint,
    load_checkpoint,
    restore_rng,
    rng_state,
    to_checkpoint,
)
from ganops.model.checkpoint_writer import CheckpointWriter, cpu_copy
from ganops.model.compile_check import runnable_options
from ganops.model.config import TrainConfig
from ganops.model.data import dataset_digest
from ganops.model.data_cache import DEFAULT_DEVICE_DATA_GB, load_domains
from ganops.model.distributed import pick_device
from ganops.model.registry import TRAIN_NOTE_TAG
from ganops.model.resume import fetch as fetch_checkpoint
from ganops.model.resume import recipe_differs, restore_recipe
from ganops.model.tracking import NullTracker, Tracker
from ganops.model.trainers import GanTrainer, StepOptions, make_trainer

# Beside checkpoints/ and bundle/; only bundle/ is uploaded, so the cache stays local.
DATA_CACHE_DIR = "data_cache"

__all__ = ["ProgressEvent", "TrainError", "TrainResult", "pick_device", "train"]


@dataclass(frozen=True)
class ProgressEvent:
    step: int  # steps done so far (1-based after the first step)
    total_steps: int
    epoch: int
    losses: dict[str, float]
    elapsed_s: float
    images_per_s: float


@dataclass(frozen=True)
class TrainResult:
    steps: int
    final_losses: dict[str, float]
    checkpoint_path: Path
    bundle_dir: Path
    seconds: float
    images_per_s: float
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    resumed_from: int = 0  # the checkpoint's step when the run continued one
    # What the run should know about how it trained (e.g. "torch.compile is off: ...").
    notes: list[str] = field(default_factory=list)


# bf16 tensor cores arrived with Ampere (compute capability 8.0).
BF16_MIN_CAPABILITY = (8, 0)


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 where the hardware runs it natively (Ampere+ GPUs, CPUs with AVX512-BF16/AMX);
    fp16 with a loss scaler on older GPUs (T4, V100), whose tensor cores have fp16 only.

    GPUs are told apart by compute capability, not `torch.cuda.is_bf16_supported()`: that
    reports True on pre-Ampere GPUs where bf16 is emulated (slower than fp16 and no tensor
    cores). On CPUs without bf16 it is emulated and slower than fp32: the step stays in fp32.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        # A CUDA config planned where there is no GPU to ask: fp16 with its scaler runs on any.
        available = torch.cuda.is_available()
        capability = torch.cuda.get_device_capability(device) if available else (0, 0)
        return torch.bfloat16 if capability >= BF16_MIN_CAPABILITY else torch.float16
    if device.type == "cpu":
        with contextlib.suppress(AttributeError, RuntimeError):
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                return torch.bfloat16
    return None


def step_options(cfg: TrainConfig, device: torch.device) -> StepOptions:
    # Channels-last pays off with tensor cores; on CPU (oneDNN) it measured no faster.
    cuda = device.type == "cuda"
    return StepOptions(
        device,
        amp_dtype(device, cfg.amp),
        channels_last=cuda,
        compile=cuda if cfg.compile is None else cfg.compile,
        compile_mode=cfg.compile_mode,
    )


@contextlib.contextmanager
def _runtime(cfg: TrainConfig, device: torch.device) -> Iterator[None]:
    """For the run only: deterministic kernels and `cfg.threads` threads on CPU, cuDNN
    autotuning on GPU."""
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class TrainSession:
    """One call of `train`; kept as an object so tests can look at the networks afterwards."""

    def __init__(
        self,
        cfg: TrainConfig,
        data: Path,
        device: torch.device,
        tracker: Tracker,
        out_dir: Path,
        progress: Callable[[ProgressEvent], None] | None = None,
        durable_url: str | None = None,
        *,
        resume: bool = False,
        device_data_gb: float = DEFAULT_DEVICE_DATA_GB,
    ) -> None:
        self.cfg, self.data, self.device, self.out_dir = cfg, Path(data), device, Path(out_dir)
        self.durable_url, self.resume_requested = durable_url, resume
        self.dist = distributed.current()
        # Only rank 0 reports: the others would log the same run N times.
        self.tracker: Tracker = tracker if self.dist.is_main else NullTracker()
        self.progress = progress if self.dist.is_main else None
        self.ckpt_path = checkpoint_path(self.out_dir)
        self.history: list[tuple[int, dict[str, float]]] = []
        self.notes: list[str] = []
        # Read before anything is sized: a resumed run keeps the recipe it started with.
        self._ckpt = self._read_checkpoint() if resume else None
        size = load_size(cfg.net.image_size, cfg.load_scale)
        # Above the budget the images stay in a decoded cache on this node's disk, written
        # by the node's first rank while the others wait for its files.
        a, b, plan = load_domains(
            self.data, size, device=device, budget_gb=device_data_gb,
            cache_dir=self.out_dir / DATA_CACHE_DIR, writer=self.dist.local_rank == 0,
        )  # fmt: skip
        if self.dist.is_main:
            print(f"train: data: {plan.message}", flush=True, file=sys.stderr)
        cfg = self.cfg = self._recipe(cfg, images=len(a) // self.dist.world_size)
        self.batches = Batches(a, b, cfg, self.dist.rank, self.dist.world_size, device)
        self.digest = dataset_digest(self.data) if self.dist.is_main else ""
        _seed_everything(cfg.seed)
        opts = dataclasses.replace(step_options(cfg, device), rank=self.dist.rank)
        opts, compile_notes = runnable_options(opts)
        self.notes += compile_notes
        self.trainer: GanTrainer = make_trainer(
            cfg,
            opts,
            lambda m: distributed.wrap(m, self.dist, device),
        )

    def _read_checkpoint(self) -> dict[str, Any] | None:
        """This run's checkpoint (local, else the durable copy), or None when it has none."""
        if not fetch_checkpoint(self.ckpt_path, self.durable_url, self.dist):
            return None
        try:
            return load_checkpoint(self.ckpt_path)
        except CheckpointError as exc:
            raise TrainError(str(exc)) from None

    def _recipe(self, cfg: TrainConfig, *, images: int) -> TrainConfig:
        """The checkpoint's recipe when resuming one; else the batch that fills the GPU."""
        if self._ckpt is not None:
            cfg, note = restore_recipe(cfg, self._ckpt)
            if note and self.dist.is_main:
                print(f"train: {note}", flush=True)
            return cfg
        return self._fill_gpu(cfg, images=images) if cfg.auto_batch else cfg

    def _fill_gpu(self, cfg: TrainConfig, *, images: int) -> TrainConfig:
        """The batch that fills this GPU and its lr (model/batch_fit.py), the same on every
        rank; said once on stderr (stdout may be `--json`'s), and kept in the run's params and
        checkpoints. A CPU run keeps its batch."""
        if self.device.type != "cuda":
            return cfg
        total = torch.cuda.get_device_properties(self.device).total_memory
        probe = batch_fit.cuda_peak_bytes(cfg, step_options(cfg, self.device))
        fitted, note = batch_fit.fit_batch(
            cfg, peak_bytes=probe, total_bytes=total, images=images,
            agree=batch_fit.min_over_ranks(self.device),
        )  # fmt: skip
        if self.dist.is_main:
            print(f"train: {note}", flush=True, file=sys.stderr)
        return fitted

    def resume(self) -> int:
        """Load the last checkpoint, if any; returns the step to continue from.

        A fresh local folder (a retried pod) takes the durable copy, when there is one.
        """
        ckpt = self._ckpt if self.resume_requested else self._read_checkpoint()
        self._ckpt = None  # once loaded into the networks, the copy is only memory
        if ckpt is None:
            return 0
        if not self.resume_requested and recipe_differs(self.cfg, self.batches.total_steps(), ckpt):
            # Sized before the checkpoint was read: only TrainSession(resume=True) adopts it.
            raise TrainError(
                f"{self.ckpt_path} was trained with another batch size, lr or length; "
                "resume it with TrainSession(..., resume=True)"
            )
        if ckpt.get("net") != self.cfg.net.to_dict():
            raise TrainError(
                f"{self.ckpt_path} was trained with a different network config; "
                "use another --out or the same model, preset and image size"
            )
        self.trainer.load_state_dict(from_checkpoint(ckpt))
        restore_rng(ckpt["rng"], self.device)
        self.history = [(int(s), dict(v)) for s, v in ckpt.get("history", [])]
        return int(ckpt["step"])

    def checkpoint(self, step: int) -> None:
        """Hand a CPU copy of the state to the writer thread and go on training."""
        if not self.dist.is_main:
            return
        state = {
            "step": step,
            "total_steps": self.batches.total_steps(),
            "net": self.cfg.net.to_dict(),
            "train": self.cfg.to_dict(),
            "seed": self.cfg.seed,
            "data_digest": self.digest,
            **to_checkpoint(self.trainer.state_dict()),
            "rng": rng_state(self.device),
            "history": self.history,
        }
        self.writer.submit(cpu_copy(state))

    def run(self, resume: bool | None = None) -> TrainResult:
        """Train to the end; `resume` (default: as constructed) continues the checkpoint."""
        resume = self.resume_requested if resume is None else resume
        self.writer = CheckpointWriter(self.ckpt_path, self.durable_url)
        try:
            with _runtime(self.cfg, self.device):
                return self._run(resume)
        finally:
            self.writer.close()

    def _due(self, done: int, total: int, last_write: float) -> bool:
        """Checkpoint every `checkpoint_every` steps, every `checkpoint_minutes`, and at the end."""
        minutes = self.cfg.checkpoint_minutes
        late = minutes > 0 and time.monotonic() - last_write >= minutes * 60
        return done % self.cfg.checkpoint_every == 0 or done == total or late

    def _run(self, resume: bool) -> TrainResult:
        start = self.resume() if resume else 0
        last_write = time.monotonic()
        total = self.batches.total_steps()
        if start == 0:
            self.tracker.log_params({"train": self.cfg.to_dict(), "data_digest": self.digest})
            self.tracker.set_tags({"data_digest": self.digest})
        if self.notes:
            self.tracker.set_tags({TRAIN_NOTE_TAG: " ".join(self.notes)})
        per_step = self.cfg.batch_size * self.dist.world_size
        losses: dict[str, float] = {}
        began = warm = time.perf_counter()
        for step in range(start, total):
            epoch, real_a, real_b = self.batches.get(step)
            self.trainer.set_lr_for_step(step, total)
            raw = self.trainer.train_step(real_a, real_b)
            done = step + 1
            if step == start:
                # The first step pays for compilation and autotuning: rates start after it.
                warm = time.perf_counter()
            if done % self.cfg.log_every == 0 or done == total or step == start:
                elapsed = time.perf_counter() - began
                rate = self._rate(done - start, per_step, began, warm)
                losses = {k: float(v) for k, v in raw.items()}
                self._report(done, total, epoch, losses, elapsed, rate)
            if done == total:  # before the last checkpoint, which holds what ships
                self.measure_norm_stats(total)
            if self._due(done, total, last_write):
                self.checkpoint(done)
                last_write = time.monotonic()
        self.writer.flush()  # the final checkpoint is on disk (and durable) before the bundle
        seconds = time.perf_counter() - began
        rate = self._rate(total - start, per_step, began, warm)
        return self._finish(total, losses, seconds, rate, start)

    def measure_norm_stats(self, total: int) -> None:
        """The shipped generator's batch-norm statistics, measured on its own weights over
        the last batches before step `total` (model/norm_stats.py). A pure function of the
        weights and the steps, so a resumed run ships the same model."""
        steps = range(max(0, total - norm_stats.BATCHES), total)
        self.trainer.measure_norm_stats(self.batches.get(s)[1:] for s in steps)

    @staticmethod
    def _rate(steps: int, per_step: int, began: float, warm: float) -> float:
        """Images per second after the first (warm-up) step; the first step's own rate when it
        is all there is."""
        now = time.perf_counter()
        if steps <= 1:
            return steps * per_step / max(now - began, 1e-9)
        return (steps - 1) * per_step / max(now - warm, 1e-9)

    def _report(
        self,
        done: int,
        total: int,
        epoch: int,
        losses: dict[str, float],
        elapsed: float,
        rate: float,
    ) -> None:
        self.history.append((done, losses))
        self.tracker.log_metrics({f"loss_{k}": v for k, v in losses.items()}, step=done)
        if self.progress is not None:
            self.progress(ProgressEvent(done, total, epoch, losses, elapsed, rate))

    def _finish(
        self, total: int, losses: dict[str, float], seconds: float, rate: float, start: int
    ) -> TrainResult:
        bundle_dir = self.out_dir / "bundle"
        if self.dist.is_main:
            self.tracker.log_metrics({"images_per_s": rate, "train_seconds": seconds}, step=total)
            meta = {
                "data_digest": self.digest,
                "train": self.cfg.to_dict(),
                "steps": total,
                "final_losses": losses,
            }
            save_bundle(bundle_dir, self.trainer.generator, self.cfg.net, meta)
        distributed.barrier()
        return TrainResult(
            steps=total,
            final_losses=losses,
            checkpoint_path=self.ckpt_path,
            bundle_dir=bundle_dir,
            seconds=seconds,
            images_per_s=rate,
            history=list(self.history),
            resumed_from=start,
            notes=list(self.notes),
        )


def train(
    cfg: TrainConfig,
    data: Path,
    device: torch.device,
    tracker: Tracker,
    out_dir: Path,
    resume: bool = False,
    progress: Callable[[ProgressEvent], None] | None = None,
    *,
    durable_url: str | None = None,
    device_data_gb: float = DEFAULT_DEVICE_DATA_GB,
) -> TrainResult:
    """Train `cfg.net.model` on the CycleGAN-layout folder `data`; write a bundle.

    Args:
        cfg: the run; `cfg.steps` (when set) overrides `cfg.epochs`.
        data: a folder with trainA/ and trainB/ (validate it first).
        device: picked once by the caller (`pick_device()`); under torchrun, the caller has
            joined the process group and the device is this process's GPU.
        tracker: where params and losses go; the caller has opened its run.
        out_dir: checkpoints/last.pt (every `cfg.checkpoint_every` steps or
            `cfg.checkpoint_minutes`, written by a background thread) and bundle/.
        resume: continue from out_dir's checkpoint (same step, optimizer and RNG state).
        progress: called on rank 0 every `cfg.log_every` steps and at the end.
        durable_url: where each checkpoint is also written (any fsspec URL), and where a
            resume with no local checkpoint reads it from.
        device_data_gb: above this many GB of decoded images (both domains), they are read
            per batch from a decoded cache in out_dir/data_cache instead of held on the
            device (the entry points read it from GANOPS_DEVICE_DATA_GB).

    Returns:
        TrainResult; `bundle_dir` holds the generator, its config and the data digest.

    Raises:
        TrainError: unusable data, a batch the data cannot fill, or a foreign checkpoint.
        ValueError: a network config the factories reject.
    """
    session = TrainSession(
        cfg, data, device, tracker, out_dir, progress, durable_url, resume=resume,
        device_data_gb=device_data_gb,
    )  # fmt: skip
    return session.run()
