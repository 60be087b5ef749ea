"""The papers' recipe pieces: the image pool, augmentation, antialiasing, FastCUT."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ganops.model.batches import Batches, augment, load_size
from ganops.model.config import TRAIN_PRESETS, TrainConfig, preset, train_config
from ganops.model.networks import BlurPool, BlurUpsample, build_feature_head, build_generator
from ganops.model.pool import ImagePool
from ganops.model.trainers import CutTrainer, CycleGanTrainer, StepOptions, make_trainer

CPU = StepOptions(torch.device("cpu"))


def _fakes(n: int, value: float) -> torch.Tensor:
    return torch.full((n, 3, 4, 4), value)


def test_the_pool_fills_first_then_swaps_about_half_the_time() -> None:
    pool = ImagePool(4, seed=0)
    first = pool.query(_fakes(4, 1.0))
    assert torch.equal(first, _fakes(4, 1.0))
    assert len(pool.images) == 4
    swapped = 0
    for i in range(200):
        out = pool.query(_fakes(1, 2.0 + i))
        swapped += int(out[0, 0, 0, 0].item() != 2.0 + i)
    assert 70 <= swapped <= 130  # p = 1/2 over 200 draws
    assert len(pool.images) == 4


def test_the_pool_is_deterministic_and_resumes_from_its_state() -> None:
    a, b = ImagePool(3, seed=7), ImagePool(3, seed=7)
    for i in range(5):
        assert torch.equal(a.query(_fakes(2, float(i))), b.query(_fakes(2, float(i))))
    saved = a.state_dict()
    c = ImagePool(3, seed=99)
    c.load_state_dict(saved, torch.device("cpu"))
    for i in range(5, 10):
        assert torch.equal(a.query(_fakes(2, float(i))), c.query(_fakes(2, float(i))))


def test_a_zero_pool_passes_fakes_through() -> None:
    fakes = torch.randn(3, 3, 4, 4)
    assert torch.equal(ImagePool(0, seed=0).query(fakes), fakes)
    with pytest.raises(ValueError, match="pool size"):
        ImagePool(-1, seed=0)


def test_augment_draws_what_torchvisions_crop_and_flip_would() -> None:
    # augment slices instead of importing torchvision; a run resumed across that change must
    # read the same batches, so the result is torchvision's for the same draws.
    from torchvision.transforms.v2 import functional as tvf

    batch = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)
    ours = augment(batch, size=32, flip=True, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    tops = torch.randint(9, (6,), generator=g).tolist()
    lefts = torch.randint(9, (6,), generator=g).tolist()
    flips = (torch.rand(6, generator=g) < 0.5).tolist()
    crops = [tvf.crop(im, t, le, 32, 32) for im, t, le in zip(batch, tops, lefts, strict=True)]
    theirs = torch.stack(
        [tvf.horizontal_flip(c) if f else c for c, f in zip(crops, flips, strict=True)]
    )
    assert torch.equal(ours, theirs)


def test_augment_crops_and_flips_deterministically() -> None:
    batch = torch.arange(2 * 3 * 36 * 36, dtype=torch.float32).reshape(2, 3, 36, 36)
    one = augment(batch, size=32, flip=True, generator=torch.Generator().manual_seed(5))
    two = augment(batch, size=32, flip=True, generator=torch.Generator().manual_seed(5))
    assert one.shape == (2, 3, 32, 32)
    assert torch.equal(one, two)
    # Each output is a (possibly mirrored) window of its own input.
    for src, out in zip(batch, one, strict=True):
        windows = src.unfold(1, 32, 1).unfold(2, 32, 1)  # C, 5, 5, 32, 32
        found = [
            torch.equal(windows[:, i, j], o) for i in range(5) for j in range(5)
            for o in (out, out.flip(-1))
        ]  # fmt: skip
        assert any(found)
    seeds = {augment(batch, size=32, flip=True, generator=torch.Generator().manual_seed(s))
             .sum().item() for s in range(8)}  # fmt: skip
    assert len(seeds) > 1
    exact = batch[..., :32, :32]
    assert augment(exact, size=32, flip=False, generator=torch.Generator()) is exact


def test_batches_depend_only_on_the_step() -> None:
    cfg = TrainConfig(net=preset("tiny"), batch_size=2, load_scale=1.25)
    size = load_size(32, 1.25)
    assert size == 40
    a = torch.randint(0, 255, (6, 3, size, size), dtype=torch.uint8)
    b = torch.randint(0, 255, (5, 3, size, size), dtype=torch.uint8)
    first, again = Batches(a, b, cfg, 0, 1), Batches(a, b, cfg, 0, 1)
    for step in (0, 1, 2, 5):
        _, x, _y = first.get(step)
        assert x.shape == (2, 3, 32, 32)
    # A fresh object (a resumed run) reads exactly the same batch for a step.
    for step in (5, 2):
        _, x1, y1 = first.get(step)
        _, x2, y2 = again.get(step)
        assert torch.equal(x1, x2)
        assert torch.equal(y1, y2)
    assert not torch.equal(first.get(0)[1], first.get(1)[1])


def test_presets_carry_the_papers_augmentation_and_fastcut_its_lambda() -> None:
    assert TRAIN_PRESETS["full"]["load_scale"] == 1.12
    assert load_size(256, 1.12) == 286
    full = train_config(model="cut", preset_name="full")
    assert full.load_scale == 1.12
    assert full.flip
    assert full.net.antialias
    assert full.net.upsample == "blur"
    assert not train_config(model="cyclegan", preset_name="full").net.antialias
    fast = train_config(model="fastcut", preset_name=None)
    assert fast.lambda_nce == 10.0
    assert train_config(model="cut", preset_name=None).lambda_nce == 1.0
    assert train_config(model="fastcut", preset_name=None, gpus=0).pool_size == 50  # unused by CUT


def test_blur_layers_keep_the_mean_and_the_sizes() -> None:
    ones = torch.ones(1, 4, 16, 16)
    assert torch.allclose(BlurPool(4)(ones), torch.ones(1, 4, 8, 8))
    assert torch.allclose(BlurUpsample(4)(ones), torch.ones(1, 4, 32, 32))


def test_antialiased_generator_keeps_the_nce_layer_indices() -> None:
    plain = preset("tiny", "cut", image_size=32, antialias=False)
    smooth = dataclasses.replace(plain, antialias=True, upsample="blur")
    g_plain, g_smooth = build_generator(plain), build_generator(smooth)
    x = torch.randn(1, 3, 32, 32)
    assert g_smooth(x).shape == x.shape
    f_plain = g_plain(x, layers=plain.nce_layers, encode_only=True)
    f_smooth = g_smooth(x, layers=smooth.nce_layers, encode_only=True)
    assert [f.shape[1] for f in f_plain] == [f.shape[1] for f in f_smooth]
    assert any(isinstance(m, BlurPool) for m in g_smooth.modules())
    build_feature_head(smooth, g_smooth)  # the head fits the same channels


@pytest.mark.slow
def test_fastcut_runs_g_on_a_alone_and_cut_on_both() -> None:
    seen: dict[str, list[int]] = {}
    for model in ("cut", "fastcut"):
        net = preset("tiny", model, ngf=4, ndf=4, n_blocks=1, n_layers_d=2, num_patches=8,
                     netf_nc=8, nce_layers=(0, 4, 7, 10))  # fmt: skip
        trainer = make_trainer(TrainConfig(net=net, batch_size=2, amp=False), CPU)
        assert isinstance(trainer, CutTrainer)
        sizes: list[int] = []
        trainer.nets["G"].register_forward_pre_hook(
            lambda _m, args, s=sizes: s.append(len(args[0]))
        )
        losses = trainer.train_step(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
        assert all(torch.isfinite(v) for v in losses.values())
        seen[model] = sizes
    assert seen["cut"][0] == 4
    assert seen["fastcut"][0] == 2


@pytest.mark.slow
def test_cyclegan_discriminators_see_pooled_fakes() -> None:
    net = preset("tiny", "cyclegan", ngf=4, ndf=4, n_blocks=1, n_layers_d=2)
    trainer = make_trainer(TrainConfig(net=net, batch_size=2, amp=False, pool_size=3), CPU)
    assert isinstance(trainer, CycleGanTrainer)
    for _ in range(3):
        trainer.train_step(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    assert {k: len(p.images) for k, p in trainer.pools.items()} == {"B": 3, "A": 3}
    state = trainer.state_dict()
    assert set(state["pools"]) == {"B", "A"}


def test_fp16_autocast_trains_with_a_loss_scaler_and_resumes_its_state() -> None:
    # GPUs without bf16 train in fp16 with a GradScaler; the same path runs on the CPU here.
    net = preset("tiny", "cut", ngf=4, ndf=4, n_blocks=1, n_layers_d=2, num_patches=8,
                 netf_nc=8, nce_layers=(0, 4, 7, 10))  # fmt: skip
    opts = StepOptions(torch.device("cpu"), amp_dtype=torch.float16)
    trainer = make_trainer(TrainConfig(net=net, batch_size=2), opts)
    assert trainer.scaler is not None
    for _ in range(2):
        losses = trainer.train_step(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    assert all(torch.isfinite(v) for v in losses.values())
    state = trainer.state_dict()
    assert "scaler" in state
    again = make_trainer(TrainConfig(net=net, batch_size=2), opts)
    again.load_state_dict(state)
    assert again.scaler is not None
    assert again.scaler.get_scale() == trainer.scaler.get_scale()


def test_compile_is_on_for_cuda_only_unless_asked() -> None:
    from ganops.model.train import step_options

    cfg = TrainConfig(net=preset("tiny"))
    assert not step_options(cfg, torch.device("cpu")).compile
    assert step_options(cfg, torch.device("cuda")).compile
    assert not step_options(dataclasses.replace(cfg, compile=False), torch.device("cuda")).compile


def test_tiny_cyclegan_gets_its_own_lr_and_an_explicit_one_wins() -> None:
    assert train_config(model="cyclegan", preset_name="tiny").lr == 1.5e-3
    assert train_config(model="cut", preset_name="tiny").lr == TRAIN_PRESETS["tiny"]["lr"]
    assert train_config(model="cyclegan", preset_name="full").lr == TRAIN_PRESETS["full"]["lr"]
    assert train_config(model="cyclegan", preset_name="tiny", lr=1e-4).lr == 1e-4
