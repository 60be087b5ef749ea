"""Batch-size scaling on GPUs: the rule that picks the batch, the lr that follows it, and when
it is on. The CUDA memory probe itself needs a GPU; here its answers are given."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from ganops.model.batch_fit import MAX_AUTO_BATCH, fit_batch, pick_batch, scaled_lr
from ganops.model.config import train_config
from ganops.model.data import make_synthetic
from ganops.model.tracking import NullTracker
from ganops.model.train import TrainSession

GIB = 2**30


def linear_memory(fixed: float, per_image: float) -> tuple[list[int], object]:
    """A probe whose peak grows linearly with the batch; records the batches it was asked."""
    asked: list[int] = []

    def peak(batch: int) -> int:
        asked.append(batch)
        return int((fixed + per_image * batch) * GIB)

    return asked, peak


def test_pick_batch_takes_the_largest_power_of_two_that_fits() -> None:
    # 8 GiB fixed + 2 GiB per image in a 64 GiB budget: 28 images fit, so 16.
    assert pick_batch(at_one=10 * GIB, at_two=12 * GIB, budget=64 * GIB) == 16
    assert pick_batch(at_one=10 * GIB, at_two=12 * GIB, budget=64 * GIB, cap=8) == 8
    # Tiny per-image memory: the cap, not the memory, stops it.
    assert pick_batch(at_one=GIB, at_two=GIB + 1, budget=64 * GIB) == MAX_AUTO_BATCH
    # Even batch 2 does not fit: batch 1.
    assert pick_batch(at_one=10 * GIB, at_two=20 * GIB, budget=12 * GIB) == 1


def test_the_lr_follows_the_square_root_rule() -> None:
    assert scaled_lr(2e-4, base_batch=1, batch=16) == pytest.approx(8e-4)
    assert scaled_lr(2e-4, base_batch=4, batch=4) == pytest.approx(2e-4)
    assert scaled_lr(1e-3, base_batch=4, batch=1) == pytest.approx(5e-4)


def test_auto_batch_is_on_for_the_full_preset_on_gpus_without_a_batch() -> None:
    on = train_config(model="cut", preset_name=None, gpus=1)
    assert on.auto_batch
    assert on.scale_lr
    assert on.batch_size == 1
    assert not train_config(model="cut", preset_name=None, gpus=1, batch_size=4).auto_batch
    assert not train_config(model="cut", preset_name=None, gpus=0).auto_batch  # tiny, CPU
    assert not train_config(model="cut", preset_name="tiny", gpus=1).auto_batch
    assert not train_config(model="cut", preset_name=None, gpus=1, lr=1e-4).scale_lr


def test_fit_batch_scales_the_lr_unless_it_was_given() -> None:
    asked, peak = linear_memory(fixed=8, per_image=2)
    cfg = train_config(model="cyclegan", preset_name=None, gpus=1)
    fitted, note = fit_batch(cfg, peak_bytes=peak, total_bytes=80 * GIB, images=400)  # type: ignore[arg-type]
    assert asked == [1, 2]
    assert fitted.batch_size == 16
    assert not fitted.auto_batch
    assert fitted.lr == pytest.approx(cfg.lr * 4)
    assert "batch 16" in note
    assert "square-root" in note
    given = train_config(model="cyclegan", preset_name=None, gpus=1, lr=1e-4)
    kept, note = fit_batch(given, peak_bytes=peak, total_bytes=80 * GIB, images=400)  # type: ignore[arg-type]
    assert kept.batch_size == 16
    assert kept.lr == pytest.approx(1e-4)
    assert "kept" in note


def test_fit_batch_leaves_every_process_a_step_per_epoch() -> None:
    _, peak = linear_memory(fixed=1, per_image=0.01)
    cfg = train_config(model="cut", preset_name=None, gpus=1)
    fitted, _ = fit_batch(cfg, peak_bytes=peak, total_bytes=80 * GIB, images=12)  # type: ignore[arg-type]
    assert fitted.batch_size == 8
    assert fitted.lr == pytest.approx(cfg.lr * math.sqrt(8))


def test_a_cpu_run_keeps_its_batch_even_when_asked_to_fill(tmp_path: Path) -> None:
    data = make_synthetic(tmp_path / "data", n_train=8, n_test=2, image_size=32)
    cfg = train_config(model="cut", preset_name="tiny", gpus=0, steps=1)
    cfg = dataclasses.replace(cfg, auto_batch=True)
    session = TrainSession(cfg, data, torch.device("cpu"), NullTracker(), tmp_path / "out")
    assert session.cfg.batch_size == cfg.batch_size
    assert session.cfg.auto_batch


def test_the_ranks_agreed_batch_sets_the_lr_and_the_note() -> None:
    # This process fits 16; another rank fits only 4: all train at 4, with 4's lr.
    _, peak = linear_memory(fixed=8, per_image=2)
    cfg = train_config(model="cut", preset_name=None, gpus=1)
    seen: list[int] = []

    def smallest_rank(batch: int) -> int:
        seen.append(batch)
        return 4

    fitted, note = fit_batch(cfg, peak_bytes=peak, total_bytes=80 * GIB, images=400,  # type: ignore[arg-type]
                             agree=smallest_rank)  # fmt: skip
    assert seen == [16]
    assert fitted.batch_size == 4
    assert fitted.lr == pytest.approx(cfg.lr * 2)
    assert note.startswith("batch 4 ")
    assert "16 here" in note
