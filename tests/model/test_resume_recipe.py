"""A resumed run keeps the recipe it started with, and every rank resumes from one checkpoint.

The auto batch is measured on CUDA only; here its answer is given (`TrainSession._fill_gpu`
faked), which is what a retry on another GPU type changes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ganops.model import distributed, storage
from ganops.model.checkpoint import load_checkpoint
from ganops.model.config import TrainConfig, preset
from ganops.model.data import make_synthetic
from ganops.model.tracking import NullTracker
from ganops.model.train import ProgressEvent, TrainError, TrainSession

WORLD = 2


def _config(model: str = "cut", **changes: object) -> TrainConfig:
    net = preset("tiny", model, ngf=4, ndf=4, n_blocks=1, n_layers_d=2, num_patches=8,
                 netf_nc=8, nce_layers=(0, 4, 7, 10))  # fmt: skip
    cfg = TrainConfig(net=net, steps=4, batch_size=2, checkpoint_every=2, log_every=1,
                      amp=False, threads=1)  # fmt: skip
    return dataclasses.replace(cfg, **changes)  # type: ignore[arg-type]


class Crash(Exception):
    """A kill, raised from the progress callback."""


def _crash_after(step: int):  # type: ignore[no-untyped-def]
    def progress(event: ProgressEvent) -> None:
        if event.step == step:
            raise Crash

    return progress


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("data"), n_train=16, n_test=4, image_size=32)


def _fake_fit(batch: int, calls: list[int]):  # type: ignore[no-untyped-def]
    def fill(self: TrainSession, cfg: TrainConfig, *, images: int) -> TrainConfig:
        calls.append(batch)
        return dataclasses.replace(cfg, batch_size=batch, lr=cfg.lr * batch, auto_batch=False)

    return fill


@pytest.mark.slow
def test_a_resume_keeps_the_batch_lr_and_length_it_started_with(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # One epoch of 16 images: batch 2 is 8 steps, batch 4 would be 4.
    cfg = _config(steps=None, epochs=1, batch_size=1, lr=1e-4, auto_batch=True, checkpoint_every=3)
    cpu, calls = torch.device("cpu"), []
    monkeypatch.setattr(TrainSession, "_fill_gpu", _fake_fit(2, calls))
    first = TrainSession(cfg, data, cpu, NullTracker(), tmp_path, _crash_after(4), resume=True)
    assert (first.cfg.batch_size, first.batches.total_steps()) == (2, 8)
    with pytest.raises(Crash):
        first.run()
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert (saved["step"], saved["total_steps"], saved["train"]["batch_size"]) == (3, 8, 2)

    # The retry lands on a GPU where batch 4 would fit: nothing is measured, the recipe stays.
    monkeypatch.setattr(TrainSession, "_fill_gpu", _fake_fit(4, calls))
    again = TrainSession(cfg, data, cpu, NullTracker(), tmp_path, resume=True)
    assert calls == [2]
    assert (again.cfg.batch_size, again.cfg.lr, again.cfg.lr_decay_start) == (2, 2e-4, 0.5)
    assert again.batches.total_steps() == 8
    result = again.run()
    assert (result.resumed_from, result.steps) == (3, 8)
    assert "resuming with the checkpoint's recipe (batch 2, lr 0.0002, 8 steps)" in (
        capsys.readouterr().out
    )
    # A session sized without reading the checkpoint may not continue it with another recipe.
    other = TrainSession(_config(steps=8, batch_size=4), data, cpu, NullTracker(), tmp_path)
    with pytest.raises(TrainError, match="another batch size, lr or length"):
        other.run(resume=True)


def _worker(rank: int, data: Path, out: Path, durable: str, init_file: Path) -> None:
    info = distributed.DistInfo(rank=rank, world_size=WORLD, local_rank=rank)
    cpu = torch.device("cpu")
    distributed.setup(info, cpu, init_method=f"file://{init_file}")
    downloads: list[str] = []
    real = storage.download

    def counted(url: str, local: Path) -> bool:
        downloads.append(url)
        return real(url, local)

    storage.download = counted  # type: ignore[assignment]
    try:
        session = TrainSession(
            _config("cyclegan"), data, cpu, NullTracker(), out, durable_url=durable, resume=True
        )
        result = session.run()
        pools = {k: p.rng.get_state() for k, p in session.trainer.pools.items()}
        torch.save({"nets": session.trainer.state_dict()["nets"], "pools": pools},
                   out / f"rank{rank}.pt")  # fmt: skip
        meta = {"resumed_from": result.resumed_from, "downloads": len(downloads)}
        (out / f"rank{rank}.json").write_text(json.dumps(meta))
    finally:
        storage.download = real  # type: ignore[assignment]
        distributed.teardown()


@pytest.mark.slow  # two spawned processes importing torch: ~30 s on a busy 2-core box
def test_two_gloo_ranks_resume_from_one_durable_checkpoint(data: Path, tmp_path: Path) -> None:
    durable = str(tmp_path / "bucket" / "req" / "last.pt")
    cpu = torch.device("cpu")
    first = TrainSession(_config("cyclegan"), data, cpu, NullTracker(), tmp_path / "pod-1",
                         _crash_after(3), durable_url=durable, resume=True)  # fmt: skip
    with pytest.raises(Crash):
        first.run()
    assert load_checkpoint(Path(durable))["step"] == 2

    shared = tmp_path / "pod-2"  # a fresh folder both ranks share, as on one node
    mp.spawn(_worker, args=(data, shared, durable, tmp_path / "init"), nprocs=WORLD, join=True)
    metas = [json.loads((shared / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert [m["resumed_from"] for m in metas] == [2, 2]
    assert [m["downloads"] for m in metas] == [1, 0]  # rank 0 fetched; rank 1 waited for it
    assert not list((shared / "checkpoints").glob(".*download"))
    a, b = (torch.load(shared / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    for name, net in a["nets"].items():
        for key, value in net.items():
            if key.rsplit(".", 1)[-1] not in {"running_mean", "running_var", "num_batches_tracked"}:
                assert torch.equal(value, b["nets"][name][key]), f"{name}.{key} differs"
    for pool in ("A", "B"):  # each rank draws its own pool choices
        assert not torch.equal(a["pools"][pool], b["pools"][pool])
    assert load_checkpoint(Path(durable))["step"] == 4
