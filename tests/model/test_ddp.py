"""DDP on two CPU processes over gloo: the real process group, the real all-reduce."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ganops.model import distributed
from ganops.model.batches import Batches, load_domain
from ganops.model.bundle import unwrap
from ganops.model.config import TrainConfig, preset
from ganops.model.data import make_synthetic
from ganops.model.tracking import NullTracker
from ganops.model.train import TrainSession

WORLD = 2
MODELS = ("cut", "cyclegan")
BATCH_STATS = {"running_mean", "running_var", "num_batches_tracked"}


def _config(model: str) -> TrainConfig:
    net = preset("tiny", model, ngf=4, ndf=4, n_blocks=1, n_layers_d=2, num_patches=8,
                 netf_nc=8, nce_layers=(0, 4, 7, 10))  # fmt: skip
    return TrainConfig(
        net=net, steps=4, batch_size=2, checkpoint_every=2, log_every=1, amp=False, threads=1
    )


def _worker(rank: int, data: Path, out: Path, init_file: Path) -> None:
    info = distributed.DistInfo(rank=rank, world_size=WORLD, local_rank=rank)
    cpu = torch.device("cpu")
    distributed.setup(info, cpu, init_method=f"file://{init_file}")
    try:
        for model in MODELS:  # one process group for both: spawning costs more than training
            session = TrainSession(_config(model), data, cpu, NullTracker(), out / model)
            generator = session.trainer.nets["G"]
            assert isinstance(generator, torch.nn.parallel.DistributedDataParallel)
            before = {k: v.clone() for k, v in unwrap(generator).state_dict().items()}
            session.run(resume=False)
            state = {"before": before, **session.trainer.state_dict()}
            torch.save(state, out / f"{model}-rank{rank}.pt")
    finally:
        distributed.teardown()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    data = make_synthetic(out / "data", n_train=16, n_test=4, image_size=32)
    mp.spawn(_worker, args=(data, out, out / "init"), nprocs=WORLD, join=True)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_two_gloo_processes_keep_every_parameter_in_sync(model: str, ddp_run: Path) -> None:
    ranks = [torch.load(ddp_run / f"{model}-rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for name, net in ranks[0]["nets"].items():
        for key, value in net.items():
            if key.rsplit(".", 1)[-1] in BATCH_STATS:
                continue  # per-rank batch statistics: only parameters are all-reduced on CPU
            assert torch.equal(value, ranks[1]["nets"][name][key]), f"{name}.{key} differs"
    for name, opt in ranks[0]["optims"].items():
        moments = [s["exp_avg"] for s in opt["state"].values()]
        others = [s["exp_avg"] for s in ranks[1]["optims"][name]["state"].values()]
        assert all(torch.equal(a, b) for a, b in zip(moments, others, strict=True)), name
    trained = ranks[0]["nets"]["G"]
    assert any(not torch.equal(trained[k], v) for k, v in ranks[0]["before"].items())
    # Only rank 0 writes checkpoints and the bundle.
    assert (ddp_run / model / "checkpoints" / "last.pt").is_file()
    assert (ddp_run / model / "bundle" / "generator.pt").is_file()


def test_each_rank_trains_on_its_own_shard(tmp_path: Path) -> None:
    # Without this, equal parameters would prove nothing: identical data keeps ranks equal.
    data = make_synthetic(tmp_path, n_train=16, n_test=2, image_size=32)
    a, b = load_domain(data / "trainA", 32), load_domain(data / "trainB", 32)
    cfg = dataclasses.replace(_config("cut"), batch_size=4)
    shards = [Batches(a, b, cfg, rank, WORLD) for rank in range(WORLD)]
    assert all(s.per_epoch == 2 for s in shards)  # 16 images / 2 ranks / batch 4
    first = [s.get(0) for s in shards]
    assert not torch.equal(first[0][1], first[1][1])
    assert not torch.equal(first[0][2], first[1][2])
    seen = {tuple(s._order) for s in shards}
    assert len(seen) == WORLD
    assert not set(shards[0]._order) & set(shards[1]._order)
