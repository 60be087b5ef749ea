from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from ganops.model.bundle import load_bundle
from ganops.model.checkpoint import checkpoint_path, load_checkpoint
from ganops.model.config import EvalConfig, NetConfig, TrainConfig, preset
from ganops.model.data import make_synthetic
from ganops.model.evaluate import evaluate, load_eval_data, untrained_baseline
from ganops.model.tracking import NullTracker, RecordingTracker
from ganops.model.train import (
    ProgressEvent,
    TrainError,
    TrainSession,
    amp_dtype,
    pick_device,
    train,
)


# Small enough that a step takes milliseconds: the loop, not the maths, is under test.
def _mini_net(model: str = "cut") -> NetConfig:
    return preset(
        "tiny", model, ngf=4, ndf=4, n_blocks=1, n_layers_d=2, num_patches=8, netf_nc=8,
        nce_layers=(0, 4, 7, 10),
    )  # fmt: skip


MINI = TrainConfig(
    net=_mini_net(),
    steps=8,
    batch_size=2,
    checkpoint_every=3,
    log_every=1,
    amp=False,
    threads=1,  # robust on busy CI machines; see TrainConfig.threads
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("data"), n_train=16, n_test=8, image_size=32)


class Crash(Exception):
    """Stands in for a kill: raised from the progress callback after a given step."""


def _crash_after(step: int):  # type: ignore[no-untyped-def]
    def progress(event: ProgressEvent) -> None:
        if event.step == step:
            raise Crash

    return progress


def _assert_same_state(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict)
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple)
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cut", "fastcut", "cyclegan"])
def test_a_killed_run_resumes_at_its_checkpoint_and_ends_like_an_uninterrupted_one(
    model: str, synthetic: Path, tmp_path: Path
) -> None:
    # Random crops and flips (load 1.25x) and a pool small enough to fill and swap in 8 steps:
    # both must make the same choices after the resume as without the kill.
    cfg = dataclasses.replace(MINI, net=_mini_net(model), load_scale=1.25, flip=True, pool_size=3)
    cpu = torch.device("cpu")
    straight = train(cfg, synthetic, cpu, NullTracker(), tmp_path / "straight")

    out = tmp_path / "killed"
    with pytest.raises(Crash):
        train(cfg, synthetic, cpu, NullTracker(), out, progress=_crash_after(5))
    assert load_checkpoint(checkpoint_path(out))["step"] == 3  # checkpoints at 3, 6, 8

    seen: list[int] = []
    resumed = train(cfg, synthetic, cpu, NullTracker(), out, resume=True,
                    progress=lambda e: seen.append(e.step))  # fmt: skip
    assert seen == [4, 5, 6, 7, 8]
    assert resumed.steps == straight.steps == 8

    a, b = load_checkpoint(straight.checkpoint_path), load_checkpoint(resumed.checkpoint_path)
    assert a["step"] == b["step"] == 8
    # Weights, Adam moments and step counts, and the RNG states: all bit-identical.
    keys = ("generator", "nets", "optims", "rng", *(("pools",) if model == "cyclegan" else ()))
    for key in keys:
        _assert_same_state(a[key], b[key], key)
    if model == "cyclegan":
        assert len(a["pools"]["B"]["images"]) == 3


def test_resume_without_a_checkpoint_starts_fresh_and_refuses_a_foreign_one(
    synthetic: Path, tmp_path: Path
) -> None:
    cpu = torch.device("cpu")
    seen: list[int] = []
    train(MINI, synthetic, cpu, NullTracker(), tmp_path, resume=True, progress=lambda e: seen.append(e.step))  # fmt: skip
    assert seen[0] == 1
    other = dataclasses.replace(MINI, net=dataclasses.replace(MINI.net, ngf=8))
    with pytest.raises(TrainError, match="different network config"):
        train(other, synthetic, cpu, NullTracker(), tmp_path, resume=True)


def test_training_logs_losses_and_writes_a_loadable_bundle(synthetic: Path, tmp_path: Path) -> None:
    tracker = RecordingTracker()
    events: list[ProgressEvent] = []
    cfg = dataclasses.replace(MINI, batch_size=4)  # 16 images: 4 steps per epoch
    result = train(cfg, synthetic, torch.device("cpu"), tracker, tmp_path, progress=events.append)
    assert [e.step for e in events] == list(range(1, 9))
    assert all(e.total_steps == 8 and e.images_per_s > 0 for e in events)
    assert [e.epoch for e in events] == [0] * 4 + [1] * 4
    assert tracker.params["train.batch_size"] == "4"
    assert tracker.params["data_digest"].startswith("sha256:")
    assert [s for s, _ in tracker.history("loss_NCE")] == list(range(1, 9))
    bundle = load_bundle(result.bundle_dir)
    assert bundle.net == MINI.net
    assert bundle.meta["data_digest"] == tracker.params["data_digest"]
    assert result.final_losses.keys() == {"D", "G_GAN", "NCE"}
    assert load_bundle(result.checkpoint_path).net == MINI.net  # a checkpoint serves too


def test_a_batch_larger_than_the_data_is_a_clear_error(synthetic: Path, tmp_path: Path) -> None:
    cfg = dataclasses.replace(MINI, batch_size=64)
    with pytest.raises(TrainError, match="cannot fill one batch"):
        train(cfg, synthetic, torch.device("cpu"), NullTracker(), tmp_path)
    with pytest.raises(TrainError, match="no images"):
        train(MINI, tmp_path, torch.device("cpu"), NullTracker(), tmp_path)


def test_device_and_precision_choice() -> None:
    device = pick_device()
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert amp_dtype(torch.device("cpu"), enabled=False) is None
    assert amp_dtype(torch.device("cpu"), enabled=True) in {None, torch.bfloat16}


@pytest.mark.slow
def test_a_short_real_run_beats_the_untrained_generator(tmp_path: Path) -> None:
    data = make_synthetic(tmp_path / "data", n_train=64, n_test=32, image_size=32)
    cfg = TrainConfig(net=preset("tiny"), steps=150, batch_size=2, lr=5e-4, log_every=50,
                      threads=1)  # fmt: skip
    session = TrainSession(cfg, data, torch.device("cpu"), NullTracker(), tmp_path / "out")
    ecfg = EvalConfig(num_images=32)
    eval_data = load_eval_data(data, ecfg, 32)
    before = untrained_baseline(cfg.net, eval_data, ecfg, "cpu")
    result = session.run(resume=False)
    after = evaluate(load_bundle(result.bundle_dir).generator, eval_data, ecfg, "cpu")
    assert after.metrics["ssim"] > before.metrics["ssim"] + 0.1
    assert after.deploy_score > before.deploy_score


def test_a_fresh_folder_resumes_from_the_durable_copy(synthetic: Path, tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    durable = str(tmp_path / "bucket" / "request-1" / "last.pt")
    with pytest.raises(Crash):
        train(MINI, synthetic, cpu, NullTracker(), tmp_path / "pod-1",
              progress=_crash_after(5), durable_url=durable)  # fmt: skip
    seen: list[int] = []
    resumed = train(MINI, synthetic, cpu, NullTracker(), tmp_path / "pod-2", resume=True,
                    progress=lambda e: seen.append(e.step), durable_url=durable)  # fmt: skip
    assert (resumed.resumed_from, seen) == (3, [4, 5, 6, 7, 8])
    assert load_checkpoint(Path(durable))["step"] == 8


def test_checkpoints_also_follow_the_clock(synthetic: Path, tmp_path: Path) -> None:
    # Far apart by steps, but "every 6 µs": each step is late, so each one is handed over.
    cfg = dataclasses.replace(MINI, checkpoint_every=1000, checkpoint_minutes=1e-7)
    with pytest.raises(Crash):
        train(cfg, synthetic, torch.device("cpu"), NullTracker(), tmp_path,
              progress=_crash_after(5))  # fmt: skip
    # Step 5 crashed while reporting, before its checkpoint; the newest handed over is 4.
    assert load_checkpoint(checkpoint_path(tmp_path))["step"] == 4
    steps_only = dataclasses.replace(cfg, checkpoint_minutes=0.0)
    with pytest.raises(Crash):
        train(steps_only, synthetic, torch.device("cpu"), NullTracker(), tmp_path / "b",
              progress=_crash_after(5))  # fmt: skip
    assert not checkpoint_path(tmp_path / "b").exists()
