"""Training throughput: our optimised step (model/trainers.py) against a plain fp32 loop.

For CUT and CycleGAN, at the tiny preset and at the full preset (batch 1), on the CPU and on
a GPU when one is present. The plain loop has the same networks, losses and maths, written
the way the reference code reads, with none of our optimisations: fp32, default memory
format, a separate forward pass per image set (CUT re-encodes both inputs for its keys),
discriminators left trainable while the generators learn, gradients zeroed in place, the
default Adam. Both run in the same process on the same batches, interleaved round by round,
so that load from other processes hits both alike; the ratio is the median over rounds.

Prints one JSON object. Goals: >= 1.3x on CPU, >= 2.5x on GPU.
The full preset runs at 128 px on the CPU by default (its widths and depth, a quarter of the
pixels) to keep the run to a few minutes; `--full-size 256` measures the real size.
Usage: bench/train_throughput.py [--quick] [--full-size N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganops.model.config import TrainConfig, preset, train_defaults
from ganops.model.losses import GANLoss, PatchNCELoss, cycle_loss, identity_loss
from ganops.model.networks import build_discriminator, build_feature_head, build_generator
from ganops.model.train import step_options
from ganops.model.trainers import make_trainer

Step = Callable[[Tensor, Tensor], Any]


def _adam(params: Any, cfg: TrainConfig) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def _zero(*optims: torch.optim.Optimizer) -> None:
    for opt in optims:
        opt.zero_grad(set_to_none=False)


def plain_cut(cfg: TrainConfig, device: torch.device) -> Step:
    net = cfg.net
    G = build_generator(net).to(device)
    F = build_feature_head(net, G).to(device)
    D = build_discriminator(net).to(device)
    opt_g, opt_f, opt_d = (
        _adam(G.parameters(), cfg),
        _adam(F.parameters(), cfg),
        _adam(D.parameters(), cfg),
    )
    gan, nce = GANLoss(cfg.gan_mode).to(device), PatchNCELoss(cfg.nce_temperature)

    def nce_loss(src: Tensor, tgt: Tensor) -> Tensor:
        feat_q = G(tgt, layers=net.nce_layers, encode_only=True)
        feat_k = G(src, layers=net.nce_layers, encode_only=True)
        pool_k, ids = F(feat_k, net.num_patches)
        pool_q, _ = F(feat_q, net.num_patches, ids)
        return torch.stack([nce(q, k) for q, k in zip(pool_q, pool_k, strict=True)]).mean()

    def step(real_a: Tensor, real_b: Tensor) -> None:
        real_a, real_b = real_a.to(device), real_b.to(device)
        fake = G(torch.cat([real_a, real_b]))
        fake_b, idt_b = fake[: real_a.shape[0]], fake[real_a.shape[0] :]
        _zero(opt_d)
        loss_d = 0.5 * (gan(D(fake_b.detach()), False) + gan(D(real_b), True))
        loss_d.backward()
        opt_d.step()
        _zero(opt_g, opt_f)
        loss_nce = 0.5 * (nce_loss(real_a, fake_b) + nce_loss(real_b, idt_b))
        loss_g = gan(D(fake_b), True) * cfg.lambda_gan + loss_nce * cfg.lambda_nce
        loss_g.backward()
        opt_g.step()
        opt_f.step()

    return step


def plain_cyclegan(cfg: TrainConfig, device: torch.device) -> Step:
    net = cfg.net
    G_A, G_B = build_generator(net).to(device), build_generator(net).to(device)
    D_A, D_B = build_discriminator(net).to(device), build_discriminator(net).to(device)
    opt_g = _adam([*G_A.parameters(), *G_B.parameters()], cfg)
    opt_d = _adam([*D_A.parameters(), *D_B.parameters()], cfg)
    gan = GANLoss(cfg.gan_mode).to(device)
    lam_c, lam_i = cfg.lambda_cycle, cfg.lambda_cycle * cfg.lambda_identity

    def d_loss(disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return 0.5 * (gan(disc(real), True) + gan(disc(fake.detach()), False))

    def step(real_a: Tensor, real_b: Tensor) -> None:
        real_a, real_b = real_a.to(device), real_b.to(device)
        fake_b, fake_a = G_A(real_a), G_B(real_b)
        rec_a, rec_b = G_B(fake_b), G_A(fake_a)
        _zero(opt_g)
        loss_idt = identity_loss(G_A(real_b), real_b) + identity_loss(G_B(real_a), real_a)
        loss_gan = gan(D_A(fake_b), True) + gan(D_B(fake_a), True)
        loss_cycle = cycle_loss(rec_a, real_a) + cycle_loss(rec_b, real_b)
        (loss_gan * cfg.lambda_gan + loss_cycle * lam_c + loss_idt * lam_i).backward()
        opt_g.step()
        _zero(opt_d)
        (d_loss(D_A, real_b, fake_b) + d_loss(D_B, real_a, fake_a)).backward()
        opt_d.step()

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step: Step, a: Tensor, b: Tensor, n: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(n):
        step(a, b)
    _sync(device)
    return (time.perf_counter() - start) / n


def measure(
    model: str, name: str, batch: int, size: int, device: torch.device, rounds: int, n: int
) -> dict[str, Any]:
    net = preset(name, model, image_size=size)
    cfg = TrainConfig(net=net, **{**train_defaults(name), "batch_size": batch})
    torch.manual_seed(0)
    a = (torch.rand(batch, 3, size, size) * 2 - 1).to(device)
    b = (torch.rand(batch, 3, size, size) * 2 - 1).to(device)
    opts = step_options(cfg, device)
    ours: Step = make_trainer(cfg, opts).train_step
    plain = plain_cut(cfg, device) if model == "cut" else plain_cyclegan(cfg, device)
    warmup = 1 if name == "full" and device.type == "cpu" else 2
    for step in (ours, plain):  # warm-up: oneDNN / cuDNN pick and cache their kernels
        _timed(step, a, b, warmup, device)
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    for _ in range(rounds):
        times["ours"].append(_timed(ours, a, b, n, device))
        times["plain"].append(_timed(plain, a, b, n, device))
    ratios = [p / o for o, p in zip(times["ours"], times["plain"], strict=True)]
    return {
        "device": device.type,
        "model": model,
        "preset": name,
        "image_size": size,
        "batch_size": batch,
        "precision": "bf16" if opts.amp_dtype is not None else "fp32",
        "channels_last": opts.channels_last,
        "ours_img_s": round(batch / statistics.median(times["ours"]), 2),
        "plain_img_s": round(batch / statistics.median(times["plain"]), 2),
        "speedup": round(statistics.median(ratios), 3),
        "rounds": rounds,
        "steps_per_round": n,
    }


def cases(
    device: torch.device, quick: bool, full_size: int
) -> list[tuple[str, int, int, int, int]]:
    """(preset, batch, image size, rounds, steps per round) for this device."""
    if device.type == "cuda":
        return [("tiny", 64, 32, 5, 20), ("full", 4, 256, 5, 10)]
    tiny = ("tiny", 4, 32, 3 if quick else 7, 10)
    return [tiny] if quick else [tiny, ("full", 1, full_size, 2, 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU tiny preset only")
    parser.add_argument(
        "--full-size",
        type=int,
        default=128,
        help="CPU image size for the full preset (256 takes ~10 min on 2 cores)",
    )
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for both loops (0: torch's default)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    results = []
    for device in devices:
        for name, batch, size, rounds, n in cases(device, args.quick, args.full_size):
            for model in ("cut", "cyclegan"):
                results.append(measure(model, name, batch, size, device, rounds, n))
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    report = {
        "benchmark": "train_throughput",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "goals": {"cpu_speedup": 1.3, "gpu_speedup": 2.5},
        "results": results,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
