"""Generators, discriminators and CUT's patch-sampling head.

One module per architecture and `build_*` factories that take a frozen `NetConfig` and raise
`ValueError` on unknown names or sizes the layers cannot handle. Both CUT and CycleGAN use
the same resnet generator and PatchGAN discriminator; they differ in losses and in how many
of each they train (see model/trainers.py).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch
from torch import Tensor, nn

from ganops.model.config import MODEL_NAMES, NCE_MODELS, NetConfig

M = TypeVar("M", bound=nn.Module)

NormFactory = Callable[[int], nn.Module]
NORM_NAMES: tuple[str, ...] = ("instance", "batch", "none")
# Layer indices of the generator's encoder: stem (0-3), two downsamples (4-9), then blocks.
_ENCODER_STEM = 10


def get_norm_layer(name: str) -> NormFactory:
    """Return a factory `channels -> nn.Module` for the named normalisation.

    Raises:
        ValueError: on an unknown name.
    """
    if name == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if name == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if name == "none":
        return lambda _channels: nn.Identity()
    raise ValueError(f"unknown norm {name!r}; choose one of {', '.join(NORM_NAMES)}")


def _conv_bias(norm: str) -> bool:
    # BatchNorm's affine shift makes a conv bias redundant; instance norm has no affine here.
    return norm != "batch"


class ResnetBlock(nn.Module):
    """Two 3x3 convolutions with reflection padding and a skip connection."""

    def __init__(self, channels: int, norm: NormFactory, bias: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            norm(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


UPSAMPLE_NAMES: tuple[str, ...] = ("transpose", "resize", "blur")


def _binomial(taps: int) -> Tensor:
    """The normalised 2-D binomial filter with `taps` taps per side ([1, 2, 1], [1, 3, 3, 1])."""
    coeffs = torch.tensor([float(_choose(taps - 1, k)) for k in range(taps)])
    kernel = coeffs[:, None] * coeffs[None, :]
    return kernel / kernel.sum()


def _choose(n: int, k: int) -> int:
    out = 1
    for i in range(k):
        out = out * (n - i) // (i + 1)
    return out


class BlurPool(nn.Module):
    """Antialiased stride-2 downsampling: reflect-pad, a [1, 2, 1] binomial blur per channel,
    keep every other pixel (Zhang 2019, as CUT's `Downsample`). No parameters."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("kernel", _binomial(3)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        kernel: Tensor = self.kernel  # type: ignore[assignment]
        return nn.functional.conv2d(x, kernel.to(x.dtype), stride=2, groups=self.channels)


class BlurUpsample(nn.Module):
    """Antialiased 2x upsampling: a transposed conv with a fixed [1, 3, 3, 1] binomial filter
    (times 4 to keep the mean), as CUT's `Upsample`. No parameters."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("kernel", (_binomial(4) * 4)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
        kernel: Tensor = self.kernel  # type: ignore[assignment]
        kernel = kernel.to(x.dtype)
        out = nn.functional.conv_transpose2d(x, kernel, stride=2, padding=2, groups=self.channels)
        return out[:, :, 1:-1, 1:-1]  # as upstream for an even filter


def _upsample(kind: str, c_in: int, c_out: int, bias: bool) -> list[nn.Module]:
    if kind == "blur":
        return [BlurUpsample(c_in), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias)]
    if kind == "transpose":
        return [nn.ConvTranspose2d(c_in, c_out, 3, 2, padding=1, output_padding=1, bias=bias)]
    if kind == "resize":
        return [
            nn.Upsample(scale_factor=2.0, mode="nearest"),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias),
        ]
    raise ValueError(f"unknown upsample {kind!r}; choose one of {', '.join(UPSAMPLE_NAMES)}")


class ResnetGenerator(nn.Module):
    """Stem, two stride-2 downsamples, `n_blocks` resnet blocks, two upsamples, tanh.

    `forward(x)` returns the translated image. `forward(x, layers=[...], encode_only=True)`
    returns the activations after the given layer indices and stops early (CUT's PatchNCE
    keys and queries); with `encode_only=False` it returns `(image, features)`, which lets
    the trainer take the keys from the same pass that makes the fake.
    """

    def __init__(self, net: NetConfig) -> None:
        super().__init__()
        norm = get_norm_layer(net.norm)
        bias = _conv_bias(net.norm)
        ngf = net.ngf
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(net.input_nc, ngf, 7, bias=bias),
            norm(ngf),
            nn.ReLU(inplace=True),
        ]
        channels = [net.input_nc, ngf, ngf, ngf]
        for mult in (1, 2):
            c_in, c_out = ngf * mult, ngf * mult * 2
            if net.antialias:
                # Blur-pool after the ReLU, in the same module, so the layer indices (and
                # the NCE layers that name them) are those of the strided version.
                act: nn.Module = nn.Sequential(nn.ReLU(inplace=True), BlurPool(c_out))
                conv = nn.Conv2d(c_in, c_out, 3, stride=1, padding=1, bias=bias)
            else:
                act = nn.ReLU(inplace=True)
                conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=bias)
            layers += [conv, norm(c_out), act]
            channels += [c_out] * 3
        layers += [ResnetBlock(ngf * 4, norm, bias) for _ in range(net.n_blocks)]
        channels += [ngf * 4] * net.n_blocks
        for mult in (4, 2):
            c_in, c_out = ngf * mult, ngf * mult // 2
            layers += [*_upsample(net.upsample, c_in, c_out, bias), norm(c_out), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, net.output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.encoder_layers = _ENCODER_STEM + net.n_blocks
        self._channels = channels

    def feature_channels(self, layers: Sequence[int]) -> list[int]:
        """Channels of the activations after each of `layers` (encoder indices only).

        Raises:
            ValueError: when an index is outside the encoder.
        """
        bad = [i for i in layers if not 0 <= i < self.encoder_layers]
        if bad or not layers:
            raise ValueError(
                f"nce layers {list(layers)} must be non-empty indices in "
                f"[0, {self.encoder_layers}) for this generator"
            )
        return [self._channels[i] for i in layers]

    def forward(
        self, x: Tensor, layers: Sequence[int] = (), encode_only: bool = False
    ) -> Tensor | list[Tensor] | tuple[Tensor, list[Tensor]]:
        if not layers:
            return self.model(x)
        wanted, last = set(layers), max(layers)
        feats: list[Tensor] = []
        for index, layer in enumerate(self.model):
            x = layer(x)
            if index in wanted:
                feats.append(x)
            if encode_only and index == last:
                return feats
        return x, feats


class NLayerDiscriminator(nn.Module):
    """PatchGAN: a grid of real/fake logits, one per overlapping patch.

    With `net.antialias_d` (upstream CUT's default) each stride-2 conv becomes a stride-1 conv,
    its norm and activation, then a blur pool: the same output grid at about 4x the convs' work.
    """

    def __init__(self, net: NetConfig) -> None:
        super().__init__()
        norm = get_norm_layer(net.norm)
        bias = _conv_bias(net.norm)
        ndf, blur = net.ndf, net.antialias_d
        layers: list[nn.Module] = _d_down(net.output_nc, ndf, None, bias=True, blur=blur)
        mult = 1
        for n in range(1, net.n_layers_d + 1):
            prev, mult = mult, min(2**n, 8)
            if n < net.n_layers_d:
                layers += _d_down(ndf * prev, ndf * mult, norm, bias=bias, blur=blur)
            else:
                layers += [
                    nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias),
                    norm(ndf * mult),
                    nn.LeakyReLU(0.2, inplace=True),
                ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def _d_down(
    c_in: int, c_out: int, norm: NormFactory | None, *, bias: bool, blur: bool
) -> list[nn.Module]:
    """One halving step of the PatchGAN: a 4x4 conv (stride 2, or stride 1 then a blur pool),
    the norm (none on the first), LeakyReLU(0.2)."""
    conv = nn.Conv2d(c_in, c_out, 4, stride=1 if blur else 2, padding=1, bias=bias)
    layers = [conv, *([norm(c_out)] if norm else []), nn.LeakyReLU(0.2, inplace=True)]
    return [*layers, BlurPool(c_out)] if blur else layers


class PatchSampleF(nn.Module):
    """CUT's head: sample the same patch positions from each feature map, project, L2-normalise.

    The MLPs are built up front from the generator's known channels, so the head has all its
    parameters before DDP wraps it and before its optimizer is made.
    """

    def __init__(self, in_channels: Sequence[int], nc: int) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, nc), nn.ReLU(inplace=True), nn.Linear(nc, nc))
            for c in in_channels
        )

    def forward(
        self,
        feats: Sequence[Tensor],
        num_patches: int,
        patch_ids: Sequence[Tensor] | None = None,
        groups: int = 1,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Return `(pooled, ids)`: per layer a (B, P, nc) tensor and the positions used, a
        (groups, P) tensor. The batch is `groups` equal parts, each with its own positions
        (CUT draws NCE_X's and NCE_Y's patches separately); given `patch_ids` set the groups.
        """
        pooled: list[Tensor] = []
        ids: list[Tensor] = []
        for index, (feat, mlp) in enumerate(zip(feats, self.mlps, strict=True)):
            flat = feat.flatten(2).transpose(1, 2)  # (B, H*W, C)
            batch, positions, channels = flat.shape
            if patch_ids is None:
                count = min(num_patches, positions)
                pid = torch.stack(
                    [torch.randperm(positions, device=feat.device)[:count] for _ in range(groups)]
                )
            else:
                pid = patch_ids[index]
            parts, count = pid.shape
            # One gather for every group: (groups, B/groups, H*W, C) -> (groups, B/groups, P, C).
            where = pid[:, None, :, None].expand(parts, batch // parts, count, channels)
            picked = flat.reshape(parts, batch // parts, positions, channels).gather(2, where)
            sample = mlp(picked.flatten(0, 1))
            pooled.append(nn.functional.normalize(sample, dim=-1, eps=1e-7))
            ids.append(pid)
        return pooled, ids


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in eval mode (running statistics, no dropout) inside the block, then back in
    the mode it was in, whatever happens."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


INIT_NAMES: tuple[str, ...] = ("normal", "xavier")


def init_weights(
    module: M, std: float = 0.02, generator: torch.Generator | None = None, kind: str = "normal"
) -> M:
    """Initialise as the papers' code does, with gain `std` and zero biases: "normal" draws
    N(0, std) (CycleGAN's default), "xavier" xavier_normal with gain `std` (CUT's default).
    Batch-norm scales start at N(1, std) either way.

    Raises:
        ValueError: on an unknown `kind`.
    """
    if kind not in INIT_NAMES:
        raise ValueError(f"unknown init {kind!r}; choose one of {', '.join(INIT_NAMES)}")
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            if kind == "xavier":
                nn.init.xavier_normal_(layer.weight, gain=std, generator=generator)
            else:
                nn.init.normal_(layer.weight, 0.0, std, generator=generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, std, generator=generator)
            nn.init.zeros_(layer.bias)
    return module


def check_net_config(net: NetConfig, training: bool = False) -> None:
    """Raise `ValueError` (one line) when the factories cannot build `net`; with `training`,
    also when CUT's NCE layers do not fit the generator (serving needs the generator only)."""
    if net.model not in MODEL_NAMES:
        raise ValueError(f"unknown model {net.model!r}; choose one of {', '.join(MODEL_NAMES)}")
    get_norm_layer(net.norm)
    if net.init not in INIT_NAMES:
        raise ValueError(f"unknown init {net.init!r}; choose one of {', '.join(INIT_NAMES)}")
    if net.upsample not in UPSAMPLE_NAMES:
        raise ValueError(
            f"unknown upsample {net.upsample!r}; choose one of {', '.join(UPSAMPLE_NAMES)}"
        )
    if min(net.ngf, net.ndf, net.n_blocks, net.n_layers_d, net.input_nc, net.output_nc) < 1:
        raise ValueError("ngf, ndf, n_blocks, n_layers_d and channel counts must be positive")
    if net.image_size < 8 or net.image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 and at least 8, got {net.image_size}")
    # The PatchGAN halves n_layers_d times, then two 4x4 stride-1 convs each take one pixel.
    if net.image_size // 2**net.n_layers_d - 2 < 1:
        raise ValueError(
            f"image_size {net.image_size} is too small for a {net.n_layers_d}-layer "
            f"discriminator; use at least {3 * 2**net.n_layers_d} or fewer layers"
        )
    encoder = _ENCODER_STEM + net.n_blocks
    if (
        training
        and net.model in NCE_MODELS
        and not all(0 <= i < encoder for i in net.nce_layers or [-1])
    ):
        raise ValueError(
            f"nce layers {list(net.nce_layers)} must be non-empty indices in [0, {encoder}) "
            f"for {net.n_blocks} resnet blocks"
        )


def build_generator(net: NetConfig, generator: torch.Generator | None = None) -> ResnetGenerator:
    """Build the resnet generator described by `net`, initialised as `net.init` says.

    Args:
        net: sizes and norm; `net.model` only has to be a known name.
        generator: the RNG for the initial weights (the global one when None).

    Returns:
        The generator, in training mode.

    Raises:
        ValueError: on an unknown model or norm name, or sizes the layers cannot handle.
    """
    check_net_config(net)
    return init_weights(ResnetGenerator(net), generator=generator, kind=net.init)


def build_discriminator(
    net: NetConfig, generator: torch.Generator | None = None
) -> NLayerDiscriminator:
    """Build the PatchGAN discriminator described by `net` (`n_layers_d`, `ndf`, `norm`).

    Raises:
        ValueError: on an unknown name or an image too small for `n_layers_d`.
    """
    check_net_config(net)
    return init_weights(NLayerDiscriminator(net), generator=generator, kind=net.init)


def build_feature_head(
    net: NetConfig, gen: ResnetGenerator, generator: torch.Generator | None = None
) -> PatchSampleF:
    """Build CUT's patch-sampling MLP head for the layers `net.nce_layers` of `gen`.

    Raises:
        ValueError: when `net` is not a CUT config or a layer index is outside the encoder.
    """
    if net.model not in NCE_MODELS:
        raise ValueError(f"only CUT and FastCUT use a feature head, not {net.model!r}")
    if net.netf_nc < 1 or net.num_patches < 1:
        raise ValueError("netf_nc and num_patches must be positive")
    head = PatchSampleF(gen.feature_channels(net.nce_layers), net.netf_nc)
    return init_weights(head, generator=generator, kind=net.init)
