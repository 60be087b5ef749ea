"""The full preset against the papers' code, layer by layer.

The tables below are written from the reference source (CUT b3ac297 `models/networks.py`:
`ResnetGenerator`, `ResnetBlock`, `NLayerDiscriminator`, `Downsample`, `Upsample`; CycleGAN
2a7afba `models/networks.py`), with the options their trainers use: `--netG resnet_9blocks
--netD basic --normG/--normD instance`, CUT antialiased (`no_antialias` off), CycleGAN not.
Where the reference trees are on disk (`.gpubench/ref`, see `../shared/gpubench/README.md`),
their modules are imported and built too: each table is checked against them, and our networks,
given the reference's weights, must compute the same images and NCE features.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from ganops.model.config import NetConfig, preset, train_config
from ganops.model.networks import build_discriminator, build_generator

ROOT = Path(__file__).resolve().parents[2]
Row = tuple[Any, ...]
# Upstream's filters: get_filter(3) for Downsample, get_filter(4) * stride**2 for Upsample.
BLUR3 = tuple((torch.outer(*[torch.tensor([1.0, 2, 1])] * 2) / 16).flatten().tolist())
BLUR4 = tuple((torch.outer(*[torch.tensor([1.0, 3, 3, 1])] * 2) / 16).flatten().tolist())
# Upstream's default nce_layers '0,4,8,12,16' count Downsample as a layer of its own; ours
# folds it into the ReLU before it, so the same activations are (0, 4, 7, 10, 14).
UPSTREAM_NCE_LAYERS = [0, 4, 8, 12, 16]


def _conv(c_in: int, c_out: int, k: int, s: int, p: int) -> Row:
    return ("conv", c_in, c_out, k, s, p, True)  # instance norm: every conv has a bias


def _norm(c: int) -> Row:
    return ("instance", c, False, False)  # affine=False, track_running_stats=False


def table_generator(*, ngf: int, blocks: int, antialias: bool) -> list[Row]:
    """ResnetGenerator(3, 3, ngf, instance, n_blocks=blocks, no_antialias=not antialias,
    no_antialias_up=not antialias): CUT's when antialiased, CycleGAN's otherwise."""
    rows: list[Row] = [("reflect", 3), _conv(3, ngf, 7, 1, 0), _norm(ngf), ("relu",)]
    for mult in (1, 2):
        c_in, c_out = ngf * mult, ngf * mult * 2
        if antialias:
            rows += [
                _conv(c_in, c_out, 3, 1, 1),
                _norm(c_out),
                ("relu",),
                ("blurpool", c_out, BLUR3),
            ]
        else:
            rows += [_conv(c_in, c_out, 3, 2, 1), _norm(c_out), ("relu",)]
    d = ngf * 4
    block = [("reflect", 1), _conv(d, d, 3, 1, 0), _norm(d), ("relu",)]
    rows += [*block, ("reflect", 1), _conv(d, d, 3, 1, 0), _norm(d)] * blocks
    for mult in (4, 2):
        c_in, c_out = ngf * mult, ngf * mult // 2
        if antialias:
            rows += [("blurup", c_in, BLUR4), _conv(c_in, c_out, 3, 1, 1)]
        else:
            rows += [("convT", c_in, c_out, 3, 2, 1, 1, True)]
        rows += [_norm(c_out), ("relu",)]
    return [*rows, ("reflect", 3), _conv(ngf, 3, 7, 1, 0), ("tanh",)]


def table_discriminator(*, ndf: int, layers: int, antialias: bool) -> list[Row]:
    """NLayerDiscriminator(3, ndf, n_layers=layers, instance, no_antialias=not antialias)."""
    stride = 1 if antialias else 2
    rows: list[Row] = [_conv(3, ndf, 4, stride, 1), ("lrelu", 0.2)]
    rows += [("blurpool", ndf, BLUR3)] if antialias else []
    mult = 1
    for n in range(1, layers):
        prev, mult = mult, min(2**n, 8)
        rows += [_conv(ndf * prev, ndf * mult, 4, stride, 1), _norm(ndf * mult), ("lrelu", 0.2)]
        rows += [("blurpool", ndf * mult, BLUR3)] if antialias else []
    prev, mult = mult, min(2**layers, 8)
    rows += [_conv(ndf * prev, ndf * mult, 4, 1, 1), _norm(ndf * mult), ("lrelu", 0.2)]
    return [*rows, _conv(ndf * mult, 1, 4, 1, 1)]


def describe(net: nn.Module) -> list[Row]:
    """The layers of `net` in forward order, as table rows (ours and upstream's alike)."""
    rows: list[Row] = []
    for m in net.children():
        name = type(m).__name__
        if isinstance(m, nn.Conv2d):
            rows.append(("conv", m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0],
                         m.padding[0], m.bias is not None))  # fmt: skip
            assert m.kernel_size[0] == m.kernel_size[1]
            assert m.stride[0] == m.stride[1]
        elif isinstance(m, nn.ConvTranspose2d):
            rows.append(("convT", m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0],
                         m.padding[0], m.output_padding[0], m.bias is not None))  # fmt: skip
        elif isinstance(m, nn.InstanceNorm2d | nn.BatchNorm2d):
            kind = "instance" if isinstance(m, nn.InstanceNorm2d) else "batch"
            rows.append((kind, m.num_features, m.affine, m.track_running_stats))
        elif isinstance(m, nn.ReflectionPad2d):
            assert len(set(m.padding)) == 1
            rows.append(("reflect", m.padding[0]))
        elif isinstance(m, nn.ReLU | nn.LeakyReLU | nn.Tanh):
            slope = (m.negative_slope,) if isinstance(m, nn.LeakyReLU) else ()
            rows.append(({"ReLU": "relu", "LeakyReLU": "lrelu", "Tanh": "tanh"}[name], *slope))
        elif name in {"BlurPool", "Downsample", "BlurUpsample", "Upsample"}:
            kernel = m.kernel if hasattr(m, "kernel") else m.filt  # ours / upstream's buffer
            assert kernel.shape[0] == m.channels
            assert torch.equal(kernel, kernel[:1].expand_as(kernel))
            kind = "blurpool" if name in {"BlurPool", "Downsample"} else "blurup"
            rows.append((kind, m.channels, tuple(kernel[0, 0].flatten().tolist())))
        elif list(m.children()):
            rows += describe(m)  # Sequential, ResnetBlock
        else:
            raise AssertionError(f"no table row for {name}")
    return rows


def _reference_root() -> Path | None:
    for candidate in (ROOT / ".gpubench" / "ref", ROOT.parent / "shared" / "gpubench" / "ref"):
        if (candidate / "cut" / "models" / "networks.py").is_file():
            return candidate
    return None


def _reference_networks(tree: str) -> Any:
    """`<tree>/models/networks.py` imported as it is, under a private package name (both
    trees call their package `models`); its package `__init__` (datasets, options) is not run."""
    root = _reference_root()
    if root is None:
        pytest.skip("no reference trees (.gpubench/ref): see ../shared/gpubench/README.md")
    name = f"_reference_{tree}_models"
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(root / tree / "models")]
        sys.modules[name] = package
    return importlib.import_module(f"{name}.networks")


def _cut_reference(kind: str) -> nn.Module:
    ref = _reference_networks("cut")
    if kind == "G":  # cut_model.py's define_G call with train_options' defaults
        return ref.define_G(3, 3, 64, "resnet_9blocks", "instance", False, "xavier", 0.02,
                            False, False, [], None)  # fmt: skip
    return ref.define_D(3, 64, "basic", 3, "instance", "xavier", 0.02, False, [], None)


def _cyclegan_reference(kind: str) -> nn.Module:
    ref = _reference_networks("cyclegan")
    if kind == "G":
        net = ref.define_G(3, 3, 64, "resnet_9blocks", "instance", False, "normal", 0.02)
    else:
        net = ref.define_D(3, 64, "basic", 3, "instance", "normal", 0.02)
    ref.init_weights(net, "normal", 0.02)  # base_model.setup -> init_net on the CPU
    return net


TABLES = {
    "cut": (table_generator(ngf=64, blocks=9, antialias=True),
            table_discriminator(ndf=64, layers=3, antialias=True)),
    "fastcut": (table_generator(ngf=64, blocks=9, antialias=True),
                table_discriminator(ndf=64, layers=3, antialias=True)),
    "cyclegan": (table_generator(ngf=64, blocks=9, antialias=False),
                 table_discriminator(ndf=64, layers=3, antialias=False)),
}  # fmt: skip


def _full(model: str) -> NetConfig:
    return preset("full", model)


@pytest.mark.parametrize("model", list(TABLES))
def test_the_full_preset_builds_the_papers_networks_layer_by_layer(model: str) -> None:
    g_table, d_table = TABLES[model]
    g_rows, d_rows = (
        describe(build_generator(_full(model))),
        describe(build_discriminator(_full(model))),
    )
    assert len(g_rows) == len(g_table)
    assert len(d_rows) == len(d_table)
    for i, (ours, theirs) in enumerate(zip(g_rows, g_table, strict=True)):
        assert ours == theirs, f"G layer {i}"
    for i, (ours, theirs) in enumerate(zip(d_rows, d_table, strict=True)):
        assert ours == theirs, f"D layer {i}"


def test_the_tables_catch_a_plain_discriminator() -> None:
    # The test above fails on the D this preset had before (antialiased G, stride-2 D).
    plain = preset("full", "cut", antialias_d=False)
    assert describe(build_discriminator(plain)) != TABLES["cut"][1]
    assert describe(build_generator(preset("full", "cut", antialias=False))) != TABLES["cut"][0]


@pytest.mark.parametrize(
    ("tree", "antialias"), [("cut", True), ("cyclegan", False)], ids=["cut", "cyclegan"]
)
def test_each_table_is_what_the_reference_code_builds(tree: str, antialias: bool) -> None:
    build = _cut_reference if tree == "cut" else _cyclegan_reference
    assert describe(build("G")) == table_generator(ngf=64, blocks=9, antialias=antialias)
    assert describe(build("D")) == table_discriminator(ndf=64, layers=3, antialias=antialias)


def _copy_weights(source: nn.Module, target: nn.Module) -> None:
    """The reference's parameters into ours, in order (the tables say the order agrees)."""
    theirs, mine = list(source.parameters()), list(target.parameters())
    assert [p.shape for p in theirs] == [p.shape for p in mine]
    with torch.no_grad():
        for a, b in zip(theirs, mine, strict=True):
            b.copy_(a)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cut", "cyclegan"])
def test_with_the_references_weights_ours_computes_the_same(model: str) -> None:
    build = _cut_reference if model == "cut" else _cyclegan_reference
    # 64 px instead of 256 keeps it quick; the layers do not depend on the size.
    net = preset("full", model, image_size=64)
    ref_g, ref_d = build("G"), build("D")
    ours_g, ours_d = build_generator(net), build_discriminator(net)
    _copy_weights(ref_g, ours_g)
    _copy_weights(ref_d, ours_d)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ours_g(x), ref_g(x), atol=1e-5)
        assert torch.allclose(ours_d(x), ref_d(x), atol=1e-5)
        if model == "cut":
            theirs = ref_g(x, list(UPSTREAM_NCE_LAYERS), encode_only=True)
            mine = ours_g(x, layers=net.nce_layers, encode_only=True)
            assert len(mine) == len(theirs) == 5
            for a, b in zip(mine, theirs, strict=True):
                assert a.shape == b.shape
                assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(("model", "kind"), [("cut", "xavier"), ("cyclegan", "normal")])
def test_weights_start_as_the_references_do(model: str, kind: str) -> None:
    net = _full(model)
    assert net.init == kind
    convs = [m for m in build_generator(net).modules() if isinstance(m, nn.Conv2d)]
    for conv in convs[1:4]:  # the stem conv is small; these have >= 73k weights
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(conv.weight)
        std = 0.02 * (2 / (fan_in + fan_out)) ** 0.5 if kind == "xavier" else 0.02
        assert float(conv.weight.detach().std()) == pytest.approx(std, rel=0.05)
        assert conv.bias is not None
        assert not conv.bias.any()


@pytest.mark.parametrize("model", ["cut", "cyclegan"])
def test_init_matches_the_reference_per_layer(model: str) -> None:
    build = _cut_reference if model == "cut" else _cyclegan_reference
    theirs = [p for p in build("G").parameters() if p.dim() == 4]
    mine = [p for p in build_generator(_full(model)).parameters() if p.dim() == 4]
    for a, b in zip(theirs, mine, strict=True):
        if a.numel() >= 4096:  # enough weights for the spread to be measured to a few %
            assert float(b.detach().std()) == pytest.approx(float(a.detach().std()), rel=0.1)


def test_the_full_presets_train_on_each_models_upstream_schedule() -> None:
    cut = train_config(model="cut", preset_name="full")
    fast = train_config(model="fastcut", preset_name="full")
    cyc = train_config(model="cyclegan", preset_name="full")
    # CUT: n_epochs 200 + n_epochs_decay 200; FastCUT: 150 + 50; CycleGAN: 100 + 100.
    assert (cut.epochs, cut.lr_decay_start) == (400, 0.5)
    assert (fast.epochs, fast.lr_decay_start) == (200, 0.75)
    assert (cyc.epochs, cyc.lr_decay_start) == (200, 0.5)
    # CUT's dataset stops the zoom-and-crop in the decay epochs; CycleGAN's crops throughout.
    assert (cut.crop_during_decay, fast.crop_during_decay, cyc.crop_during_decay) == (
        False, False, True,
    )  # fmt: skip
    assert cut.nce_separate_patches  # NCE_X and NCE_Y: two F calls, two draws upstream
    assert (cut.flip_equivariance, fast.flip_equivariance, cyc.flip_equivariance) == (
        False, True, False,
    )  # fmt: skip
    assert (cut.load_scale, cyc.load_scale) == (1.12, 1.12)  # load_size 286 for crop_size 256
    assert (cut.lambda_nce, fast.lambda_nce, cut.net.nce_layers) == (1.0, 10.0, (0, 4, 7, 10, 14))


def test_nce_x_and_nce_y_draw_their_own_patches() -> None:
    from ganops.model.networks import PatchSampleF

    torch.manual_seed(0)
    head = PatchSampleF([4], nc=8)
    feat = torch.randn(6, 4, 8, 8)  # A's three images, then B's three
    pooled, ids = head([feat], 10, groups=2)
    assert ids[0].shape == (2, 10)
    assert not torch.equal(ids[0][0], ids[0][1])
    flat = feat.flatten(2).transpose(1, 2)
    for group, rows in enumerate((slice(0, 3), slice(3, 6))):
        expected = head.mlps[0](flat[rows][:, ids[0][group]])
        assert torch.allclose(pooled[0][rows], nn.functional.normalize(expected, dim=-1))
    again, _ = head([feat], 10, ids)  # the queries reuse the keys' positions
    assert torch.allclose(again[0], pooled[0])


def test_decay_steps_resize_the_whole_image_instead_of_cropping() -> None:
    import dataclasses

    from ganops.model.batches import Batches, _resize, _to_float

    cfg = dataclasses.replace(
        train_config(model="cut", preset_name="tiny", steps=4, batch_size=2),
        load_scale=1.5, flip=False, crop_during_decay=False,
    )  # fmt: skip
    a = torch.randint(0, 255, (4, 3, 48, 48), dtype=torch.uint8)
    batches = Batches(a, a.clone(), cfg, 0, 1)
    crops = [batches.get(step)[1] for step in (0, 1)]
    assert all(c.shape == (2, 3, 32, 32) for c in crops)
    whole = [_to_float(_resize(a[i : i + 1], 32)) for i in range(4)]
    # Before the decay (steps 0, 1) each image is a crop; from step 2 on, the resized image.
    assert not any(torch.equal(c[:1], w) for c in crops for w in whole)
    decayed = batches.get(2)[1]
    assert any(torch.equal(decayed[:1], w) for w in whole)
    crops_on = Batches(a, a.clone(), dataclasses.replace(cfg, crop_during_decay=True), 0, 1)
    assert not any(torch.equal(crops_on.get(2)[1][:1], w) for w in whole)


class _Recorder(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.inputs, self.outputs = inner, list[Any](), list[Any]()

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        self.inputs.append(x.detach().clone() if isinstance(x, torch.Tensor) else x)
        self.outputs.append(self.inner(x, *args, **kwargs))
        return self.outputs[-1]


@pytest.mark.parametrize("separate", [False, True])
def test_the_cut_step_draws_nce_y_patches_apart_when_asked(separate: bool) -> None:
    import dataclasses

    from ganops.model.trainers import CutTrainer, StepOptions

    tiny = train_config(model="cut", preset_name="tiny", batch_size=2)
    cfg = dataclasses.replace(tiny, nce_separate_patches=separate)
    trainer = CutTrainer(cfg, StepOptions(torch.device("cpu")))
    head = trainer.nets["F"] = _Recorder(trainer.nets["F"])
    trainer.train_step(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    (_, key_ids), (_, query_ids) = head.outputs
    assert all(k.shape == (2 if separate else 1, cfg.net.num_patches) for k in key_ids)
    assert all(torch.equal(k, q) for k, q in zip(key_ids, query_ids, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("coin", [0.2, 0.8])
def test_fastcut_flips_the_input_and_keeps_the_keys_unflipped(
    monkeypatch: pytest.MonkeyPatch, coin: float
) -> None:
    import dataclasses

    from ganops.model.trainers import CutTrainer, StepOptions

    tiny = train_config(model="fastcut", preset_name="tiny", batch_size=2)
    trainer = CutTrainer(dataclasses.replace(tiny, flip_equivariance=True),
                         StepOptions(torch.device("cpu")))  # fmt: skip
    recorder = _Recorder(trainer.nets["G"])
    trainer.nets["G"] = recorder
    real_a, real_b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.tensor(coin))
    losses = trainer.train_step(real_a, real_b)
    assert all(torch.isfinite(v) for v in losses.values())
    if coin < 0.5:  # flipped: G(flip(A)), the keys' G(A), the queries' G(fake)
        assert len(recorder.inputs) == 3
        assert torch.equal(recorder.inputs[0], real_a.flip(3))
        assert torch.equal(recorder.inputs[1], real_a)
    else:
        assert len(recorder.inputs) == 2
        assert torch.equal(recorder.inputs[0], real_a)
