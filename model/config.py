"""Frozen configuration for the GAN: networks, training and evaluation.

Every size comes from here. Nothing below `main(argv)` sees an argparse namespace.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

ModelName = Literal["cut", "fastcut", "cyclegan"]
MODEL_NAMES: tuple[str, ...] = ("cut", "fastcut", "cyclegan")
# The models trained with PatchNCE (a feature head F on the generator's encoder). FastCUT is
# CUT without the identity NCE term on B and with lambda_NCE = 10 (Park et al. 2020).
NCE_MODELS: tuple[str, ...] = ("cut", "fastcut")
PresetName = Literal["tiny", "full"]
PRESET_NAMES: tuple[str, ...] = ("tiny", "full")


@dataclass(frozen=True)
class NetConfig:
    """Architecture of one model: a resnet generator with a PatchGAN discriminator."""

    model: ModelName = "cut"
    image_size: int = 32
    ngf: int = 16
    ndf: int = 16
    n_blocks: int = 3
    n_layers_d: int = 3
    input_nc: int = 3
    output_nc: int = 3
    norm: Literal["instance", "batch", "none"] = "instance"
    # "transpose": ConvTranspose2d as in the CycleGAN paper; "resize": nearest upsampling then a
    # 3x3 conv, which avoids checkerboard artifacts (same parameter count); "blur": CUT's
    # antialiased upsampling (a fixed [1, 3, 3, 1] transposed blur, then a 3x3 conv).
    upsample: Literal["transpose", "resize", "blur"] = "transpose"
    # CUT's antialiased downsampling: stride-1 conv, norm, ReLU, then a [1, 2, 1] blur pool
    # with stride 2 (Zhang 2019), instead of a stride-2 conv. Off by default so bundles saved
    # before it existed load unchanged; the full preset turns it on for the NCE models, as
    # upstream CUT does.
    antialias: bool = False
    # The same for the PatchGAN's stride-2 convs (upstream CUT antialiases D too). Its own
    # field: checkpoints of runs from before it hold a plain D.
    antialias_d: bool = False
    # How weights start (model/networks.py `init_weights`, gain 0.02 either way): "normal" as
    # CycleGAN's code, "xavier" as CUT's (xavier_normal).
    init: Literal["normal", "xavier"] = "normal"
    # CUT: patches sampled per layer for PatchNCE, the MLP head width, and the layers used.
    # Layer indices count the generator's modules (model/networks.py): 0 the padded input,
    # 4 and 7 the two downsampling convs, 10 the first resnet block, 10 + k block k + 1.
    num_patches: int = 256
    netf_nc: int = 256
    nce_layers: tuple[int, ...] = (0, 4, 7, 10, 12)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "nce_layers" in kwargs:
            kwargs["nce_layers"] = tuple(kwargs["nce_layers"])
        return cls(**kwargs)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. `steps`, when set, overrides `epochs`."""

    net: NetConfig = field(default_factory=NetConfig)
    epochs: int = 5
    steps: int | None = None
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 4
    # Let the run pick the batch that fills its GPU (model/batch_fit.py), starting from
    # `batch_size` and `lr`; with `scale_lr`, the lr follows the batch by the square-root rule.
    # `train_config` turns it on for the full preset on GPUs when no batch size is given.
    auto_batch: bool = False
    scale_lr: bool = True
    seed: int = 0
    lambda_gan: float = 1.0
    lambda_nce: float = 1.0
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    gan_mode: str = "lsgan"
    # The learning rate stays at `lr` for this fraction of the steps, then falls linearly to
    # zero (CycleGAN's schedule, by steps instead of epochs); 1.0 keeps it constant.
    lr_decay_start: float = 0.5
    # The shipped generator is an exponential moving average of G's weights with this
    # decay (0 ships G itself).
    ema_decay: float = 0.999
    nce_temperature: float = 0.07
    # CUT's NCE_X and NCE_Y terms each draw their own patch positions, as upstream's two F
    # calls do; False shares one draw between them (the tiny preset's tuned behaviour).
    nce_separate_patches: bool = False
    # Augmentation as in the papers, on the device: images are loaded at `load_scale` times the
    # training size, then each gets a random crop back to it and, with `flip`, a random
    # horizontal flip. Deterministic per step and rank, so a resumed run sees the same batches.
    load_scale: float = 1.0
    flip: bool = True
    # Upstream CUT stops the zoom-and-crop once the lr decays (its dataset resizes to the crop
    # size in the decay epochs); False does the same: decay steps resize to the training size.
    crop_during_decay: bool = True
    # FastCUT's flip equivariance (upstream's default for it): half the steps flip G's input
    # and flip the NCE queries back, so the keys come from the unflipped image.
    flip_equivariance: bool = False
    # CycleGAN's history of generated images for the discriminators (Shrivastava et al.
    # 2017): 50 in the paper; 0 turns it off. CUT does not use one.
    pool_size: int = 50
    amp: bool = True
    # torch.compile of the trained networks: None means on for CUDA, off elsewhere (on CPU
    # the compile time outweighs the gain for runs of minutes). "max-autotune" adds CUDA
    # graphs; it compiles for much longer, so it is a choice, not the default.
    compile: bool | None = None
    compile_mode: str = "default"
    checkpoint_every: int = 50
    # Also checkpoint when this much time has passed since the last one (0: steps only), so a
    # slow full-size run loses at most this much to a preempted node.
    checkpoint_minutes: float = 10.0
    log_every: int = 10
    num_workers: int = 0
    # CPU threads for the run (None: torch's default, one per core). Tiny steps gain ~1.3x
    # from a second thread on an idle machine but can run 10x slower when other processes
    # take the cores, so busy shared machines do better with 1.
    threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EvalConfig:
    """Fixed evaluation: the same inputs and seeds for challenger and champion."""

    seed: int = 1234
    num_images: int = 256
    batch_size: int = 16
    grid_images: int = 8
    # The gate (model/gate.py): the challenger must beat its rival by `gate_margin` with
    # `gate_confidence`, by a paired bootstrap of `bootstrap_resamples` over the inputs.
    # -0.005: pass unless confidently worse by more than 0.005 in deploy score. At 0 every
    # equal challenger was refused (bench/gate_validity.py, 50 trials: 100% of them); at
    # -0.005 none was, and 4% of a blurred copy (0.009 worse) passed, 0% of the copies 0.03
    # and 0.12 worse; at -0.01, 12% of the blurred copy passed (docs/recipe.md).
    gate_margin: float = -0.005
    gate_confidence: float = 0.9
    bootstrap_resamples: int = 1000


PRESETS: dict[str, NetConfig] = {
    # Trains on 2 CPU cores in minutes. Batch norm, because instance norm rescales each image
    # by its own contrast, which blows up flat synthetic scenes with a single small shape; a
    # one-layer PatchGAN (16 px receptive field) judges the local style of 32 px images.
    # Resize-then-conv upsampling: at 32 px a transposed conv's checkerboard covers much of
    # each shape. Removing it lifted SSIM at equal steps (CUT 1900: 0.54 -> 0.57; CycleGAN
    # 947: 0.66 -> 0.71) for a step a few percent slower.
    "tiny": NetConfig(
        image_size=32,
        ngf=16,
        ndf=16,
        n_blocks=3,
        n_layers_d=1,
        norm="batch",
        upsample="resize",
        num_patches=64,
        netf_nc=64,
    ),
    # The GPU default: the published CUT/CycleGAN sizes.
    "full": NetConfig(
        image_size=256,
        ngf=64,
        ndf=64,
        n_blocks=9,
        num_patches=256,
        netf_nc=256,
        nce_layers=(0, 4, 7, 10, 14),
    ),
}


def preset(name: str, model: str = "cut", **overrides: Any) -> NetConfig:
    """Return the named preset for `model`, with overrides applied. The full preset of the NCE
    models is upstream CUT's: antialiased down- and upsampling in G, antialiased D, xavier init
    (docs/recipe.md).

    Raises:
        ValueError: on an unknown preset or model name.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    if model not in MODEL_NAMES:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    by_model: dict[str, Any] = {}
    if name == "full" and model in NCE_MODELS:
        by_model = {"antialias": True, "antialias_d": True, "upsample": "blur", "init": "xavier"}
    return dataclasses.replace(PRESETS[name], model=model, **{**by_model, **overrides})  # type: ignore[arg-type]


# Training defaults per preset; explicit flags and /retrain keys override them. The tiny
# values are tuned on the synthetic set (bench/learning.py); full uses the papers' values.
# The tiny preset keeps load_scale 1: its 32 px synthetic scenes are scored against ground
# truth at the same scale, and a 12% zoom costs more SSIM in 90 s than it gains.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"lr": 5e-4, "batch_size": 4, "epochs": 10, "steps": None, "load_scale": 1.0},
    "full": {"lr": 2e-4, "batch_size": 1, "epochs": 200, "steps": None, "load_scale": 1.12},
}
# Per-model training values that differ from TrainConfig's defaults (the papers').
MODEL_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "fastcut": {"lambda_nce": 10.0},
}
# Per preset and model, over both of the above. CycleGAN's step costs 1.4x CUT's (three
# generator passes), so in the tiny preset's minutes it gets fewer steps: a higher lr gets
# further in them (bench/learning.py at 947 steps, SSIM: 0.64 at 5e-4, 0.66 at 1.5e-3; with
# resize upsampling 0.66 at 5e-4, 0.68 at 1e-3, 0.71 at 1.5e-3 (0.71 with seed 1), 0.69 at
# 2e-3).
# The full preset follows each model's upstream schedule and augmentation (docs/recipe.md):
# CycleGAN 100 + 100 epochs (the TRAIN_PRESETS default), CUT 200 + 200, FastCUT 150 + 50;
# CUT and FastCUT resize instead of zoom-and-crop while the lr decays; FastCUT is trained
# flip-equivariant.
PRESET_MODEL_TRAIN_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("tiny", "cyclegan"): {"lr": 1.5e-3},
    ("full", "cut"): {"epochs": 400, "crop_during_decay": False, "nce_separate_patches": True},
    ("full", "fastcut"): {
        "epochs": 200,
        "lr_decay_start": 0.75,
        "crop_during_decay": False,
        "flip_equivariance": True,
    },
}


def train_defaults(name: str) -> dict[str, Any]:
    """The TrainConfig fields that the named preset sets (a fresh dict).

    Raises:
        ValueError: on an unknown preset name.
    """
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(TRAIN_PRESETS)}")
    return dict(TRAIN_PRESETS[name])


def default_preset(*, gpus: int) -> str:
    """The preset a run gets when it names none: the papers' sizes on GPUs, tiny on CPU.

    The one home of that rule: the CLI (`--preset auto`), `/retrain` and the pipeline use it.
    """
    return "full" if gpus > 0 else "tiny"


def image_size_for(*, preset_name: str | None, gpus: int, image_size: int | None) -> int:
    """The image size a run trains at: the given one, else its preset's."""
    return image_size or PRESETS[preset_name or default_preset(gpus=gpus)].image_size


def train_config(
    *,
    model: str,
    preset_name: str | None,
    gpus: int = 0,
    image_size: int | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    amp: bool = True,
    threads: int | None = None,
    checkpoint_every: int | None = None,
    checkpoint_minutes: float | None = None,
) -> TrainConfig:
    """The one way to build a run's `TrainConfig`: the preset's network and training values,
    then every explicit value. None means "the preset's". Giving `epochs` drops the preset's
    `steps`; `steps`, when set, wins over `epochs` (as in `TrainConfig`).

    The CLI and the pipeline's train step both call this, so the same request trains the same
    thing wherever it runs (`/retrain gpus=1` gets the full preset's published recipe).

    Raises:
        ValueError: on an unknown preset or model name.
    """
    name = preset_name or default_preset(gpus=gpus)
    net = preset(name, model, **({"image_size": image_size} if image_size else {}))
    explicit = {
        "epochs": epochs,
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "checkpoint_every": checkpoint_every,
        "checkpoint_minutes": checkpoint_minutes,
    }
    chosen: dict[str, Any] = {
        **train_defaults(name),
        **MODEL_TRAIN_DEFAULTS.get(model, {}),
        **PRESET_MODEL_TRAIN_DEFAULTS.get((name, model), {}),
        **{k: v for k, v in explicit.items() if v is not None},
    }
    if epochs is not None and steps is None:
        chosen["steps"] = None
    # The papers' batch 1 leaves a GPU mostly idle: unless one is given, fill it.
    auto_batch = name == "full" and gpus > 0 and batch_size is None
    return TrainConfig(
        net=net, seed=seed, amp=amp, threads=threads, auto_batch=auto_batch,
        scale_lr=lr is None, **chosen,
    )  # fmt: skip
