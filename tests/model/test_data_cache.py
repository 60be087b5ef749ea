"""Above the device budget the images stream from a decoded cache on disk: the same batches as
held on the device, the same after a resume, and a cache only ever reused when it is whole
and of the same folder and size."""

from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from ganops.model.batches import Batches, load_domain, load_size
from ganops.model.cli.train import train_main
from ganops.model.config import TrainConfig, preset
from ganops.model.data import make_synthetic
from ganops.model.data_cache import (
    ENV,
    cache_path,
    device_data_gb,
    load_domains,
    open_cache,
    plan,
    write_cache,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("d"), n_train=20, n_test=2, image_size=16)


def _cfg(**kw: object) -> TrainConfig:
    net = dataclasses.replace(preset("tiny"), image_size=16)
    return TrainConfig(net=net, batch_size=3, load_scale=1.25, flip=True, epochs=4, **kw)  # type: ignore[arg-type]


def _both(data: Path, cfg: TrainConfig, cache: Path) -> tuple[torch.Tensor, ...]:
    size = load_size(cfg.net.image_size, cfg.load_scale)
    held = load_domains(data, size, device=CPU, budget_gb=1e3, cache_dir=cache, writer=True)
    streamed = load_domains(data, size, device=CPU, budget_gb=0, cache_dir=cache, writer=True)
    assert not held[2].stream
    assert streamed[2].stream
    assert isinstance(held[0], torch.Tensor)
    assert isinstance(streamed[0], np.memmap)
    return held[0], held[1], streamed[0], streamed[1]  # type: ignore[return-value]


def _equal(x: Batches, y: Batches, step: int) -> None:
    ex, ax, bx = x.get(step)
    ey, ay, by = y.get(step)
    assert ex == ey
    assert torch.equal(ax, ay), f"A at step {step}"
    assert torch.equal(bx, by), f"B at step {step}"


@pytest.mark.parametrize("crop_during_decay", [True, False])
def test_streamed_batches_are_the_held_ones_across_epochs_and_ranks(
    data: Path, tmp_path: Path, crop_during_decay: bool
) -> None:
    cfg = _cfg(crop_during_decay=crop_during_decay)
    a, b, sa, sb = _both(data, cfg, tmp_path)
    for world in (1, 2):
        for rank in range(world):
            held, streamed = Batches(a, b, cfg, rank, world), Batches(sa, sb, cfg, rank, world, CPU)
            assert held.per_epoch == streamed.per_epoch >= 2
            # Every step of every epoch: the epoch boundaries and the decay's resize included.
            for step in range(held.total_steps()):
                _equal(held, streamed, step)
    # The two ranks read different images: each its own shard of A.
    r0, r1 = Batches(sa, sb, cfg, 0, 2, CPU), Batches(sa, sb, cfg, 1, 2, CPU)
    assert not torch.equal(r0.get(0)[1], r1.get(0)[1])


def test_a_resumed_stream_reads_what_the_uninterrupted_run_reads(
    data: Path, tmp_path: Path
) -> None:
    cfg = _cfg()
    a, b, sa, sb = _both(data, cfg, tmp_path)
    uninterrupted = Batches(a, b, cfg, 1, 2)
    seen = {s: uninterrupted.get(s) for s in range(uninterrupted.total_steps())}
    for k in (1, uninterrupted.per_epoch, uninterrupted.per_epoch + 1):
        resumed = Batches(sa, sb, cfg, 1, 2, CPU)  # a new process, after a resume at step k
        for step in range(k, k + 3):
            e, ra, rb = resumed.get(step)
            assert e == seen[step][0]
            assert torch.equal(ra, seen[step][1])
            assert torch.equal(rb, seen[step][2])


def test_the_cache_holds_load_domain_and_is_reused_only_for_the_same_folder_and_size(
    data: Path, tmp_path: Path
) -> None:
    folder = data / "trainA"
    path = write_cache(folder, 20, tmp_path)
    assert torch.equal(torch.from_numpy(np.array(open_cache(folder, 20, tmp_path))),
                       load_domain(folder, 20))  # fmt: skip
    mtime = path.stat().st_mtime_ns
    assert write_cache(folder, 20, tmp_path) == path
    assert path.stat().st_mtime_ns == mtime  # reused, not rewritten
    assert cache_path(folder, 24, tmp_path) != path  # another size
    assert cache_path(data / "trainB", 20, tmp_path) != path  # another folder
    # A changed folder: one image more, a new key, so the old cache is not read.
    extra = folder / "zz_extra.png"
    extra.write_bytes(sorted(folder.iterdir())[0].read_bytes())
    try:
        assert cache_path(folder, 20, tmp_path) != path
        assert len(open_cache(folder, 20, write_cache(folder, 20, tmp_path).parent)) == 21
        assert not path.exists()  # the stale cache is gone, not left to fill the disk
    finally:
        extra.unlink()


def test_a_half_written_cache_is_never_read(data: Path, tmp_path: Path) -> None:
    folder = data / "trainB"
    path = cache_path(folder, 20, tmp_path)
    tmp_path.mkdir(exist_ok=True)
    # A writer killed mid-write: its temporary file, and (worse) a short file under the name.
    path.with_name(f"{path.name}.tmp-99999").write_bytes(b"\0" * 100)
    path.write_bytes(b"\1" * 100)
    with pytest.raises(Exception, match="missing or incomplete"):
        open_cache(folder, 20, tmp_path)
    write_cache(folder, 20, tmp_path)  # rewrites it whole
    assert torch.equal(torch.from_numpy(np.array(open_cache(folder, 20, tmp_path))),
                       load_domain(folder, 20))  # fmt: skip
    assert not any(p.name.endswith(f"tmp-{os.getpid()}") for p in tmp_path.iterdir())


def test_the_budget_decides_and_a_bad_value_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    per_domain = 100 * 3 * 256 * 256  # 19.7 MB
    assert plan((100, 100), 256, 0.03).stream
    assert not plan((100, 100), 256, 0.04).stream
    assert f"{2 * per_domain / 1e9:.2f} GB > {ENV}=0.03" in plan((100, 100), 256, 0.03).message
    assert device_data_gb({}) == 8.0
    assert device_data_gb({ENV: " 0.5 "}) == 0.5
    assert device_data_gb({ENV: "0"}) == 0.0
    for bad in ("lots", "-1", "nan", "inf"):
        with pytest.raises(ValueError, match=rf"^{ENV} must be a number of GB >= 0, got '{bad}'$"):
            device_data_gb({ENV: bad})
    monkeypatch.setenv(ENV, "lots")
    assert train_main(["--synthetic", "--out", "/nonexistent/ganops-never"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ganops train: error: {ENV} must be a number of GB >= 0, got 'lots'"]


@pytest.mark.slow
def test_a_streamed_run_killed_and_resumed_ends_like_an_in_memory_run(tmp_path: Path) -> None:
    """The whole loop: the same seed held on the device (the default budget) and streamed
    (budget 0), the streamed one killed after step 5 and resumed, end bit-identical."""
    from ganops.model.checkpoint import load_checkpoint
    from ganops.model.tracking import NullTracker
    from ganops.model.train import DATA_CACHE_DIR, train
    from tests.model.test_train import MINI, Crash, _assert_same_state, _crash_after

    data = make_synthetic(tmp_path / "data", n_train=16, n_test=2, image_size=32)
    cfg = dataclasses.replace(MINI, load_scale=1.25, flip=True)
    held = train(cfg, data, CPU, NullTracker(), tmp_path / "held")
    assert not (tmp_path / "held" / DATA_CACHE_DIR).exists()
    out = tmp_path / "streamed"
    with pytest.raises(Crash):
        train(cfg, data, CPU, NullTracker(), out, progress=_crash_after(5), device_data_gb=0)
    streamed = train(cfg, data, CPU, NullTracker(), out, resume=True, device_data_gb=0)
    assert streamed.resumed_from == 3
    assert len(list((out / DATA_CACHE_DIR).glob("*.u8"))) == 2  # A and B, decoded once
    a, b = load_checkpoint(held.checkpoint_path), load_checkpoint(streamed.checkpoint_path)
    assert a["step"] == b["step"] == 8
    for key in ("generator", "nets", "optims", "rng"):
        _assert_same_state(a[key], b[key], key)


def test_a_second_rank_waits_for_the_writers_whole_files(data: Path, tmp_path: Path) -> None:
    """The node's other ranks do not decode: they wait until the writer has renamed both
    files into place (a half file under the name does not end the wait), then read them."""
    size = 20
    path_a = cache_path(data / "trainA", size, tmp_path)
    tmp_path.mkdir(exist_ok=True)
    path_a.write_bytes(b"\0" * 10)  # a killed writer's short file: keep waiting

    def reader() -> tuple[object, ...]:
        return load_domains(data, size, device=CPU, budget_gb=0, cache_dir=tmp_path,
                            writer=False, poll_s=0.01)  # fmt: skip

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(reader)
        time.sleep(0.2)
        assert not waiting.done()
        load_domains(data, size, device=CPU, budget_gb=0, cache_dir=tmp_path, writer=True)
        a, b, chosen = waiting.result(timeout=30)
    assert chosen.stream  # type: ignore[attr-defined]
    assert torch.equal(torch.from_numpy(np.array(a)), load_domain(data / "trainA", size))
    assert torch.equal(torch.from_numpy(np.array(b)), load_domain(data / "trainB", size))


def _ddp_worker(rank: int, data: Path, out: Path, init_file: Path) -> None:
    from ganops.model import distributed
    from ganops.model.tracking import NullTracker
    from ganops.model.train import TrainSession
    from tests.model.test_ddp import WORLD, _config

    info = distributed.DistInfo(rank=rank, world_size=WORLD, local_rank=rank)
    distributed.setup(info, CPU, init_method=f"file://{init_file}")
    try:
        cfg = dataclasses.replace(_config("cut"), load_scale=1.25, flip=True)
        for name, budget in (("held", 1e3), ("streamed", 0.0)):
            session = TrainSession(cfg, data, CPU, NullTracker(), out / name, device_data_gb=budget)
            assert isinstance(session.batches.a, np.memmap) == (name == "streamed")
            session.run(resume=False)
            torch.save(session.trainer.state_dict(), out / f"{name}-rank{rank}.pt")
    finally:
        distributed.teardown()


@pytest.mark.slow
def test_two_gloo_ranks_streaming_train_as_two_holding_the_data(tmp_path: Path) -> None:
    """A real 2-process gloo run: each rank streams its own shard (both write the cache on
    CPU, where every rank is the node's first: the atomic rename keeps one whole file)."""
    import torch.multiprocessing as mp

    from tests.model.test_train import _assert_same_state

    data = make_synthetic(tmp_path / "data", n_train=16, n_test=2, image_size=32)
    mp.spawn(_ddp_worker, args=(data, tmp_path, tmp_path / "init"), nprocs=2, join=True)
    for rank in range(2):
        held = torch.load(tmp_path / f"held-rank{rank}.pt", weights_only=True)
        streamed = torch.load(tmp_path / f"streamed-rank{rank}.pt", weights_only=True)
        _assert_same_state(held["nets"], streamed["nets"], f"rank {rank}")
    assert len(list((tmp_path / "streamed" / "data_cache").glob("*.u8"))) == 2
    assert not list((tmp_path / "streamed" / "data_cache").glob("*.tmp-*"))
