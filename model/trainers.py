"""One optimisation step of CUT and of CycleGAN, written for speed.

Both trainers own their networks, optimizers and losses, and expose the same small surface:
`train_step(real_a, real_b) -> losses`, `generator` (A -> B, what the bundle ships), and
`state_dict()` / `load_state_dict()` for checkpoints. Compared with the reference loops they:

- run the generator once on `cat(real_A, real_B)` and take the PatchNCE keys from that same
  pass (the reference re-encodes both inputs; the keys are detached, so this is exact);
- run each discriminator once on `cat(real, fake)` for its update (instance norm is per
  sample, so batching changes nothing; batch norm keeps separate passes);
- freeze the discriminators while the generators learn (no wasted weight gradients), and
  drop gradients with `set_to_none`;
- use bf16 autocast and channels-last tensors where the caller enables them.

As in the papers, CycleGAN's discriminators judge fakes drawn from a 50-image pool
(`model.pool`), and FastCUT is CUT without the identity NCE pass on B.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ganops.model import norm_stats
from ganops.model.config import MODEL_NAMES, NCE_MODELS, TrainConfig
from ganops.model.losses import GANLoss, PatchNCELoss, cycle_loss, identity_loss
from ganops.model.networks import (
    build_discriminator,
    build_feature_head,
    build_generator,
    eval_mode,
)
from ganops.model.pool import ImagePool

Wrap = Callable[[nn.Module], nn.Module]


@dataclass(frozen=True)
class StepOptions:
    """How the step runs, decided once by the caller for its device."""

    device: torch.device
    amp_dtype: torch.dtype | None = None  # bf16 (or fp16 with a grad scaler) autocast when set
    channels_last: bool = False
    # torch.compile of every trained network (G, D, F): fused kernels on GPUs. `compile_mode`
    # "reduce-overhead" or "max-autotune" adds CUDA graphs (CUDA_GRAPH_MODES) where the shapes
    # are static: off by default until bench/vs_reference.py has measured them on a GPU.
    compile: bool = False
    compile_mode: str = "default"
    # This process's rank under DDP: seeds what must differ between ranks (CycleGAN's pools).
    rank: int = 0


# torch.compile modes that capture CUDA graphs: each training step must tell the graph trees a
# new iteration began, so that the previous step's outputs may be overwritten.
CUDA_GRAPH_MODES: tuple[str, ...] = ("reduce-overhead", "max-autotune")


def set_requires_grad(modules: list[nn.Module], flag: bool) -> None:
    for module in modules:
        for param in module.parameters():
            param.requires_grad_(flag)


def ddp_of(module: nn.Module) -> DistributedDataParallel | None:
    """The DDP module `module` is or wraps: `torch.compile` of a DDP module (the order DDP
    documents for compile) hides it inside an OptimizedModule's `_orig_mod`."""
    while not isinstance(module, DistributedDataParallel):
        inner = getattr(module, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return None
        module = inner
    return module


@contextlib.contextmanager
def no_grad_sync(module: nn.Module) -> Iterator[None]:
    """A frozen DDP module's forward must not arm the reducer for a backward it never sees
    (the next forward would fail: "Expected to have finished reduction"), compiled or not."""
    ddp = ddp_of(module)
    if ddp is None:
        yield
        return
    with ddp.no_sync():
        yield


def _adam(module: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Adam:
    # The fused kernel exists for CPU and CUDA tensors and is much faster than the loop.
    fused = device.type in {"cpu", "cuda"}
    return torch.optim.Adam(
        module.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused
    )


class Ema:
    """An exponential moving average of a generator's weights: what gets shipped.

    Averaging over the last ~1/(1-decay) steps removes most of the step-to-step jitter of
    adversarial training (speckle), at the cost of one fused lerp per step.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        from ganops.model.bundle import unwrap

        self.decay = decay
        self.model = copy.deepcopy(unwrap(module)).requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        from ganops.model.bundle import unwrap

        self.updates += 1
        # Early on the average would still be mostly the random init: warm the decay up.
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        source = unwrap(module)
        torch._foreach_lerp_(list(self.model.parameters()), list(source.parameters()), 1.0 - decay)
        for mine, theirs in zip(self.model.buffers(), source.buffers(), strict=True):
            mine.copy_(theirs)


class GanTrainer:
    """Shared plumbing: device placement, autocast, the weight average, checkpoint state."""

    nets: dict[str, nn.Module]
    optims: dict[str, torch.optim.Optimizer]

    def __init__(self, cfg: TrainConfig, opts: StepOptions) -> None:
        self.cfg = cfg
        self.opts = opts
        self.gan = GANLoss(cfg.gan_mode).to(opts.device)
        self._init_rng = torch.Generator().manual_seed(cfg.seed)
        # fp16 (GPUs without bf16: T4, V100) needs loss scaling; bf16 has fp32's range.
        fp16 = opts.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(opts.device.type) if fp16 else None
        self.ema: Ema | None = None
        self.pools: dict[str, ImagePool] = {}

    def _start_ema(self) -> None:
        if self.cfg.ema_decay > 0:
            self.ema = Ema(self.nets["G"], self.cfg.ema_decay)

    def _place(self, module: nn.Module, wrap: Wrap) -> nn.Module:
        module = module.to(self.opts.device)
        if self.opts.channels_last:
            module = module.to(memory_format=torch.channels_last)
        module = wrap(module)
        if self.opts.compile:
            # DDP first, then compile the DDP module, as DDP documents for torch.compile: the
            # graph is split at its buckets (DDPOptimizer) so all-reduces overlap the backward.
            # `no_grad_sync` finds DDP inside; `model.bundle.unwrap` strips both for checkpoints.
            module = torch.compile(module, mode=self.opts.compile_mode)  # type: ignore[assignment]
        return module

    def _input(self, x: Tensor) -> Tensor:
        x = x.to(self.opts.device, non_blocking=True)
        if self.opts.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.opts.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.opts.device.type, dtype=self.opts.amp_dtype)

    def _d_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        if self.cfg.net.norm == "batch":
            pred_real, pred_fake = disc(real), disc(fake)
        else:
            pred_real, pred_fake = disc(torch.cat([real, fake])).split(real.shape[0])
        return 0.5 * (self.gan(pred_real, True) + self.gan(pred_fake, False))

    def set_lr_for_step(self, step: int, total: int) -> float:
        """Apply the schedule for `step` of `total`; a pure function of the step, so a resumed
        run needs no scheduler state."""
        start = self.cfg.lr_decay_start * total
        factor = 1.0 if step < start else max(0.0, (total - step) / max(total - start, 1.0))
        lr = self.cfg.lr * factor
        for opt in self.optims.values():
            for group in opt.param_groups:
                group["lr"] = lr
        return lr

    def train_step(self, real_a: Tensor, real_b: Tensor) -> dict[str, Tensor]:
        """One update of every network on a batch; returns the detached losses."""
        if self.opts.compile and self.opts.compile_mode in CUDA_GRAPH_MODES:
            torch.compiler.cudagraph_mark_step_begin()
        losses = self._step(self._input(real_a), self._input(real_b))
        if self.ema is not None:
            self.ema.update(self.nets["G"])
        return losses

    def _step(self, real_a: Tensor, real_b: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def norm_inputs(self, real_a: Tensor, real_b: Tensor) -> list[Tensor]:
        """The batches G normalises in one training step on (real_a, real_b)."""
        raise NotImplementedError

    def measure_norm_stats(self, batches: Iterable[tuple[Tensor, Tensor]]) -> bool:
        """Measure the shipped generator's batch-norm statistics on its own weights over
        `batches` of (real_a, real_b) (model/norm_stats.py); False when it has none. Every rank
        calls it: SyncBatchNorm reduces across ranks."""
        from ganops.model.bundle import unwrap

        inputs = (x for a, b in batches for x in self.norm_inputs(self._input(a), self._input(b)))
        return norm_stats.measure(unwrap(self.generator), inputs)

    def _update(self, loss: Tensor, optims: list[torch.optim.Optimizer]) -> None:
        for opt in optims:
            opt.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            for opt in optims:
                opt.step()
            return
        self.scaler.scale(loss).backward()
        for opt in optims:
            self.scaler.step(opt)  # skipped when the scaled gradients overflowed
        self.scaler.update()

    @property
    def generator(self) -> nn.Module:
        """The A -> B generator to ship: the weight average when there is one, else G
        (possibly DDP-wrapped)."""
        return self.ema.model if self.ema is not None else self.nets["G"]

    def state_dict(self) -> dict[str, Any]:
        from ganops.model.bundle import unwrap

        state: dict[str, Any] = {
            "nets": {k: unwrap(v).state_dict() for k, v in self.nets.items()},
            "optims": {k: v.state_dict() for k, v in self.optims.items()},
        }
        if self.ema is not None:
            state["ema"] = {"model": self.ema.model.state_dict(), "updates": self.ema.updates}
        if self.pools:
            state["pools"] = {k: v.state_dict() for k, v in self.pools.items()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from ganops.model.bundle import unwrap

        for name, net in self.nets.items():
            unwrap(net).load_state_dict(state["nets"][name])
        for name, opt in self.optims.items():
            opt.load_state_dict(state["optims"][name])
        if self.ema is not None and "ema" in state:
            self.ema.model.load_state_dict(state["ema"]["model"])
            self.ema.updates = int(state["ema"]["updates"])
        elif self.ema is not None:  # a checkpoint from a run without the average
            self.ema = Ema(self.nets["G"], self.cfg.ema_decay)
        for name, pool in self.pools.items():
            if name in state.get("pools", {}):
                pool.load_state_dict(state["pools"][name], self.opts.device)
                if self.opts.rank:
                    # Only rank 0's pools are checkpointed: each other rank branches off its
                    # stream its own way, deterministically.
                    draw = int(torch.randint(2**31, (1,), generator=pool.rng))
                    pool.rng.manual_seed(draw * 1009 + self.opts.rank)
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


class CutTrainer(GanTrainer):
    """CUT: one generator, one discriminator, the PatchNCE head F, with NCE on B as well
    ("nce_idt"). FastCUT (`model="fastcut"`) drops the NCE on B, so G runs on A alone."""

    def __init__(self, cfg: TrainConfig, opts: StepOptions, wrap: Wrap = lambda m: m) -> None:
        super().__init__(cfg, opts)
        net = cfg.net
        gen = build_generator(net, self._init_rng)
        # F is built from G's known channels, so it has its parameters before DDP wraps it.
        head = build_feature_head(net, gen, self._init_rng)
        disc = build_discriminator(net, self._init_rng)
        self.nets = {"G": self._place(gen, wrap), "D": self._place(disc, wrap)}
        self.nets["F"] = self._place(head, wrap)
        self.optims = {k: _adam(v, cfg, opts.device) for k, v in self.nets.items()}
        self.nce = PatchNCELoss(cfg.nce_temperature)
        self.nce_idt = net.model == "cut"
        self._start_ema()

    def norm_inputs(self, real_a: Tensor, real_b: Tensor) -> list[Tensor]:
        # G's one pass in `_step`: A, and B too for the identity NCE.
        return [torch.cat([real_a, real_b]) if self.nce_idt else real_a]

    def _step(self, real_a: Tensor, real_b: Tensor) -> dict[str, Tensor]:
        G, D, F = self.nets["G"], self.nets["D"], self.nets["F"]
        cfg, layers, n = self.cfg, self.cfg.net.nce_layers, real_a.shape[0]
        (inputs,) = self.norm_inputs(real_a, real_b)
        # FastCUT's flip equivariance: a coin from the CPU generator (checkpointed with the
        # run's RNG state), so a resumed run flips the same steps.
        flipped = cfg.flip_equivariance and bool(torch.rand(()) < 0.5)
        with self.autocast():
            fake, keys = G(inputs.flip(3) if flipped else inputs, layers=layers)
            if flipped:  # upstream's keys come from the unflipped input
                with torch.no_grad():
                    keys = G(inputs, layers=layers, encode_only=True)
        fake_b = fake[:n]

        set_requires_grad([D], True)
        with self.autocast():
            loss_d = self._d_loss(D, real_b, fake_b.detach())
        self._update(loss_d, [self.optims["D"]])

        set_requires_grad([D], False)
        with self.autocast():
            with no_grad_sync(D):
                loss_gan = self.gan(D(fake_b), True) * cfg.lambda_gan
            # Queries: G's encoder on G(A) and (CUT) on G(B), the identity term, in one pass.
            queries = G(fake, layers=layers, encode_only=True)
            if flipped:
                queries = [q.flip(3) for q in queries]
            # NCE_X and NCE_Y each draw their own patches, as upstream's two F calls do.
            groups = 2 if self.nce_idt and cfg.nce_separate_patches else 1
            with torch.no_grad():
                key_pool, ids = F([k.detach() for k in keys], cfg.net.num_patches, groups=groups)
            query_pool, _ = F(queries, cfg.net.num_patches, ids)
            loss_nce = torch.stack(
                [self.nce(q, k) for q, k in zip(query_pool, key_pool, strict=True)]
            ).mean()
            loss_g = loss_gan + loss_nce * cfg.lambda_nce
        self._update(loss_g, [self.optims["G"], self.optims["F"]])
        return {"D": loss_d.detach(), "G_GAN": loss_gan.detach(), "NCE": loss_nce.detach()}


class CycleGanTrainer(GanTrainer):
    """CycleGAN: G (A -> B), G_BA (B -> A), D (judges B) and D_A (judges A)."""

    def __init__(self, cfg: TrainConfig, opts: StepOptions, wrap: Wrap = lambda m: m) -> None:
        super().__init__(cfg, opts)
        net = cfg.net
        nets = {
            "G": build_generator(net, self._init_rng),
            "G_BA": build_generator(net, self._init_rng),
            "D": build_discriminator(net, self._init_rng),
            "D_A": build_discriminator(net, self._init_rng),
        }
        self.nets = {k: self._place(v, wrap) for k, v in nets.items()}
        self.optims = {k: _adam(v, cfg, opts.device) for k, v in self.nets.items()}
        # One pool per discriminator and rank, each with its own stream of choices: ranks
        # sharing a stream would swap the same slots in step.
        self.pools = {
            d: ImagePool(cfg.pool_size, seed=cfg.seed + i + 2 * opts.rank)
            for i, d in enumerate("BA")
        }
        self._start_ema()

    @torch.no_grad()
    def norm_inputs(self, real_a: Tensor, real_b: Tensor) -> list[Tensor]:
        # G runs on (A, B) for the translation and identity terms, and on G_BA(B) for the
        # cycle back. G_BA makes that fake in eval mode, so its own statistics stay as trained.
        from ganops.model.bundle import unwrap

        with eval_mode(unwrap(self.nets["G_BA"])) as g_ba:
            fake_a = g_ba(real_b)
        return [torch.cat([real_a, real_b]), fake_a]

    def _step(self, real_a: Tensor, real_b: Tensor) -> dict[str, Tensor]:
        G, G_BA, D, D_A = (self.nets[k] for k in ("G", "G_BA", "D", "D_A"))
        cfg, n = self.cfg, real_a.shape[0]
        lam_c, lam_i = cfg.lambda_cycle, cfg.lambda_cycle * cfg.lambda_identity

        set_requires_grad([D, D_A], False)
        with self.autocast():
            # Three generator passes instead of six: batch what does not depend on an output.
            fake_b, same_b = G(torch.cat([real_a, real_b])).split(n)
            fake_a, same_a, rec_a = G_BA(torch.cat([real_b, real_a, fake_b])).split(n)
            rec_b = G(fake_a)
            with no_grad_sync(D), no_grad_sync(D_A):
                loss_gan = self.gan(D(fake_b), True) + self.gan(D_A(fake_a), True)
            loss_cycle = cycle_loss(rec_a, real_a) + cycle_loss(rec_b, real_b)
            loss_idt = identity_loss(same_b, real_b) + identity_loss(same_a, real_a)
            loss_g = loss_gan * cfg.lambda_gan + loss_cycle * lam_c + loss_idt * lam_i
        self._update(loss_g, [self.optims["G"], self.optims["G_BA"]])

        set_requires_grad([D, D_A], True)
        pooled_b, pooled_a = self.pools["B"].query(fake_b), self.pools["A"].query(fake_a)
        with self.autocast():
            loss_d = self._d_loss(D, real_b, pooled_b)
            loss_d = loss_d + self._d_loss(D_A, real_a, pooled_a)
        self._update(loss_d, [self.optims["D"], self.optims["D_A"]])
        return {
            "D": loss_d.detach(),
            "G_GAN": loss_gan.detach(),
            "cycle": loss_cycle.detach(),
            "idt": loss_idt.detach(),
        }


def make_trainer(cfg: TrainConfig, opts: StepOptions, wrap: Wrap = lambda m: m) -> GanTrainer:
    """The trainer for `cfg.net.model`.

    Raises:
        ValueError: on an unknown model name (or any bad size, from the factories).
    """
    if cfg.net.model in NCE_MODELS:
        return CutTrainer(cfg, opts, wrap)
    if cfg.net.model == "cyclegan":
        return CycleGanTrainer(cfg, opts, wrap)
    raise ValueError(f"unknown model {cfg.net.model!r}; choose one of {', '.join(MODEL_NAMES)}")
