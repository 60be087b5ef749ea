"""The shipped generator's batch-norm statistics are measured on its own weights."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from ganops.model import norm_stats
from ganops.model.bundle import load_bundle, unwrap
from ganops.model.checkpoint import load_checkpoint
from ganops.model.config import NetConfig, TrainConfig, preset
from ganops.model.data import make_synthetic
from ganops.model.tracking import NullTracker
from ganops.model.train import TrainSession
from ganops.model.trainers import CutTrainer, CycleGanTrainer, StepOptions, make_trainer

CPU = StepOptions(device=torch.device("cpu"))


def _net(model: str, **over: Any) -> NetConfig:
    return preset("tiny", model, ngf=4, ndf=4, n_blocks=1, n_layers_d=2, num_patches=8,
                  netf_nc=8, nce_layers=(0, 4, 7, 10), **over)  # fmt: skip


def _bn(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_the_statistics_are_the_equal_weight_average_over_the_inputs() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3)
    net = nn.Sequential(conv, nn.BatchNorm2d(5)).eval()
    batches = [torch.randn(4, 3, 8, 8) * (i + 1) + i for i in range(3)]
    assert norm_stats.measure(net, iter(batches))
    with torch.no_grad():
        feats = [conv(x) for x in batches]
    bn = net[1]
    expected_mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(dim=0)
    expected_var = torch.stack([f.transpose(0, 1).flatten(1).var(dim=1) for f in feats]).mean(0)
    torch.testing.assert_close(bn.running_mean, expected_mean)
    torch.testing.assert_close(bn.running_var, expected_var)
    assert bn.momentum == 0.1  # as it was
    assert not net.training


def test_no_inputs_leave_the_statistics_as_they_were() -> None:
    bn = nn.BatchNorm2d(2)
    bn.running_mean.fill_(0.5)
    assert not norm_stats.measure(nn.Sequential(bn), iter([]))
    assert torch.equal(bn.running_mean, torch.full((2,), 0.5))


def test_a_generator_without_batch_norm_is_left_alone() -> None:
    from ganops.model.networks import build_generator

    gen = build_generator(_net("cut", norm="instance"))
    before = copy.deepcopy(gen.state_dict())

    def never() -> Iterator[torch.Tensor]:
        raise AssertionError("inputs were drawn for a network without batch norm")
        yield torch.zeros(1)

    assert not norm_stats.measure(gen, never())
    assert all(torch.equal(before[k], v) for k, v in gen.state_dict().items())


@pytest.mark.parametrize("model", ["cut", "fastcut"])
def test_cut_normalises_what_g_saw_in_training(model: str) -> None:
    trainer = make_trainer(TrainConfig(net=_net(model), batch_size=2, amp=False), CPU)
    assert isinstance(trainer, CutTrainer)
    a, b = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    (x,) = trainer.norm_inputs(a, b)
    assert torch.equal(x, torch.cat([a, b]) if model == "cut" else a)


def test_cyclegan_adds_the_cycle_pass_without_touching_g_ba() -> None:
    trainer = make_trainer(TrainConfig(net=_net("cyclegan"), batch_size=2, amp=False), CPU)
    assert isinstance(trainer, CycleGanTrainer)
    g_ba = unwrap(trainer.nets["G_BA"])
    buffers = [t.clone() for t in g_ba.buffers()]
    a, b = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    both, fake_a = trainer.norm_inputs(a, b)
    assert torch.equal(both, torch.cat([a, b]))
    with torch.no_grad():
        torch.testing.assert_close(fake_a, g_ba.eval()(b))
    g_ba.train()
    assert all(torch.equal(x, y) for x, y in zip(buffers, g_ba.buffers(), strict=True))
    assert not fake_a.requires_grad


def _gap(gen: nn.Module, x: torch.Tensor) -> float:
    """How far eval mode (running statistics) is from train mode (the batch's own) on x."""
    with torch.no_grad():
        train_out = copy.deepcopy(gen).train()(x)
        eval_out = copy.deepcopy(gen).eval()(x)
    return float((train_out - eval_out).abs().mean())


@pytest.mark.slow
def test_the_weight_average_gets_statistics_of_its_own_weights() -> None:
    torch.manual_seed(0)
    trainer = make_trainer(TrainConfig(net=_net("cut"), batch_size=4, amp=False), CPU)
    data = [(torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) - 0.5) for _ in range(6)]
    for a, b in data:
        trainer.train_step(a, b)
    shipped = trainer.generator
    assert shipped is not trainer.nets["G"]  # the weight average
    x = torch.cat(data[0])
    copied = _gap(shipped, x)  # statistics copied from G: other weights, few batches
    assert trainer.measure_norm_stats(data[:1])
    assert _gap(shipped, x) < copied / 5
    # G's own running statistics are not the shipped ones any more.
    assert not torch.equal(_bn(shipped)[0].running_mean, _bn(trainer.nets["G"])[0].running_mean)


def test_the_run_measures_them_before_its_last_checkpoint(tmp_path: Path) -> None:
    data = make_synthetic(tmp_path / "data", n_train=8, n_test=4, image_size=32)
    cfg = TrainConfig(net=_net("cut"), steps=6, batch_size=2, checkpoint_every=4, amp=False,
                      threads=1)  # fmt: skip
    session = TrainSession(cfg, data, torch.device("cpu"), NullTracker(), tmp_path / "run")
    result = session.run(resume=False)
    shipped = {k: v.clone() for k, v in session.trainer.generator.state_dict().items()}
    session.measure_norm_stats(6)  # the same weights and batches: the same statistics
    for key, value in session.trainer.generator.state_dict().items():
        torch.testing.assert_close(value, shipped[key], rtol=0, atol=1e-6)
    final = load_checkpoint(result.checkpoint_path)["generator"]
    bundle = load_bundle(result.bundle_dir).generator.state_dict()
    for key, value in shipped.items():
        assert torch.equal(final[key], value), key
        assert torch.equal(bundle[key], value), key
    # And they differ from G's, which training keeps as they were.
    g = session.trainer.nets["G"].state_dict()
    var = next(k for k in shipped if k.endswith("running_var"))
    assert not torch.equal(g[var], shipped[var])
