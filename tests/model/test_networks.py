from __future__ import annotations

import dataclasses

import pytest
import torch

from ganops.model.config import NetConfig, preset
from ganops.model.networks import (
    build_discriminator,
    build_feature_head,
    build_generator,
    check_net_config,
    get_norm_layer,
)


@pytest.mark.parametrize("model", ["cut", "cyclegan"])
@pytest.mark.parametrize(("name", "size"), [("tiny", 32), ("full", 48)])
def test_generator_keeps_the_image_shape_and_range(model: str, name: str, size: int) -> None:
    # The full preset's widths and depth at a small image, so the check stays cheap on CPU.
    net = preset(name, model=model, image_size=size)
    gen = build_generator(net)
    x = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        y = gen(x)
    assert y.shape == x.shape
    assert float(y.abs().max()) <= 1.0


@pytest.mark.parametrize(("name", "size", "patches"), [("tiny", 32, 14), ("full", 48, 4)])
def test_discriminator_gives_a_patch_grid(name: str, size: int, patches: int) -> None:
    net = preset(name, image_size=size)
    disc = build_discriminator(net)
    with torch.no_grad():
        out = disc(torch.zeros(3, 3, size, size))
    assert out.shape == (3, 1, patches, patches)


def test_full_preset_has_the_published_generator_size() -> None:
    gen = build_generator(preset("full"))
    # CycleGAN's resnet_9blocks with ngf 64 has 11.378M parameters.
    assert sum(p.numel() for p in gen.parameters()) == 11_378_179


def test_cut_features_come_from_the_nce_layers_and_stop_early() -> None:
    net = preset("tiny")
    gen = build_generator(net)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = gen(x, layers=net.nce_layers, encode_only=True)
        image, same_feats = gen(x, layers=net.nce_layers)
        plain = gen(x)
    assert [f.shape[1] for f in feats] == gen.feature_channels(net.nce_layers)
    assert feats[0].shape[-1] == 32 + 6  # layer 0 is the reflection-padded input
    assert all(torch.equal(a, b) for a, b in zip(feats, same_feats, strict=True))
    assert torch.equal(image, plain)


def test_feature_head_samples_the_same_positions_for_keys_and_queries() -> None:
    torch.manual_seed(0)
    net = preset("tiny", num_patches=16, netf_nc=8)
    gen = build_generator(net)
    head = build_feature_head(net, gen)
    feats = gen(torch.randn(2, 3, 32, 32), layers=net.nce_layers, encode_only=True)
    pooled, ids = head(feats, net.num_patches)
    again, ids_again = head(feats, net.num_patches, ids)
    assert [p.shape for p in pooled] == [(2, 16, 8)] * len(net.nce_layers)
    assert all(torch.equal(a, b) for a, b in zip(ids, ids_again, strict=True))
    assert all(torch.allclose(a, b) for a, b in zip(pooled, again, strict=True))
    # A deep layer: with 3 input channels (layer 0) a patch can land on all-dead ReLUs.
    assert torch.allclose(pooled[-1].norm(dim=-1), torch.ones(2, 16), atol=1e-5)


def test_seeded_init_is_reproducible_and_small() -> None:
    net = preset("tiny")
    a = build_generator(net, generator=torch.Generator().manual_seed(3))
    b = build_generator(net, generator=torch.Generator().manual_seed(3))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    stem = a.model[1]
    assert isinstance(stem, torch.nn.Conv2d)
    assert 0.015 < float(stem.weight.detach().std()) < 0.025


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "pix2pix"}, "unknown model"),
        ({"norm": "layer"}, "unknown norm"),
        ({"image_size": 30}, "multiple of 4"),
        ({"image_size": 16}, "too small"),
        ({"ngf": 0}, "positive"),
    ],
)
def test_factories_raise_on_bad_configs(change: dict[str, object], message: str) -> None:
    net = dataclasses.replace(NetConfig(), **change)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        build_generator(net)
    with pytest.raises(ValueError, match=message):
        build_discriminator(net)


def test_small_images_work_with_a_shallower_discriminator() -> None:
    net = NetConfig(image_size=16, n_layers_d=2)
    assert build_discriminator(net)(torch.zeros(1, 3, 16, 16)).shape == (1, 1, 2, 2)


def test_nce_layers_must_lie_in_the_encoder() -> None:
    bad = preset("tiny", nce_layers=(0, 13))  # 3 blocks: the encoder has layers 0..12
    with pytest.raises(ValueError, match="nce layers"):
        check_net_config(bad, training=True)
    gen = build_generator(bad)  # serving needs no NCE layers
    with pytest.raises(ValueError, match="nce layers"):
        build_feature_head(bad, gen)
    with pytest.raises(ValueError, match="only CUT"):
        build_feature_head(preset("tiny", model="cyclegan"), gen)


def test_norm_factory() -> None:
    assert isinstance(get_norm_layer("instance")(4), torch.nn.InstanceNorm2d)
    assert isinstance(get_norm_layer("batch")(4), torch.nn.BatchNorm2d)
    assert isinstance(get_norm_layer("none")(4), torch.nn.Identity)
    with pytest.raises(ValueError, match="unknown norm"):
        get_norm_layer("group")
