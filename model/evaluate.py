"""Offline evaluation on fixed inputs and the one number the gate uses: the deploy score.

The inputs are `cfg.num_images` testA images (256 by default) chosen by `cfg.seed`;
challenger and champion see the same ones, and the gate compares them input by input
(model/gate.py). Metrics (see model/metrics.py):
- `ssim`, `psnr`: G(testA) against `testB_gt/` (only when the data set has ground truth);
- `kid`: KID between G(testA) and real testB, on the features of our own small encoder
  (trained in seconds to tell trainA from trainB) joined with nine image statistics;
- `hist_dist`: colour-histogram distance between G(testA) and testB;
- `diversity`: mean pairwise distance of the outputs over that of the inputs (collapse check).

Each quality metric becomes a term in [0, 1] measured against doing nothing, i.e. the identity
map, whose values come from the data alone (testA itself vs testB / testB_gt):
    ssim_term = clip((ssim - ssim_identity) / (1 - ssim_identity), 0, 1)
    kid_term  = clip(1 - kid / kid_identity, 0, 1)
    hist_term = clip(1 - hist_dist / hist_identity, 0, 1)
A collapse guard scales the result down when the outputs vary less than half as much as real
B images do relative to A (`div_target = div(testB) / div(testA)`):
    diversity_guard = clip(diversity / (0.5 * div_target), 0, 1)
    deploy_score = diversity_guard * (0.5 ssim_term + 0.3 kid_term + 0.2 hist_term)
without ground truth:  diversity_guard * (0.6 kid_term + 0.4 hist_term)
So 0 means "no better than returning the input" and 1 means "indistinguishable from the true
translation"; a collapsed generator scores near 0 whatever it fools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ganops.model.config import EvalConfig, NetConfig
from ganops.model.data import dataset_digest, list_images, load_image
from ganops.model.images import make_grid
from ganops.model.metrics import (
    DomainEncoder,
    encode,
    histogram_distance,
    kid,
    mean_pairwise_distance,
    psnr,
    ssim,
    train_domain_encoder,
)
from ganops.model.networks import eval_mode

ENCODER_TRAIN_IMAGES = 256
_encoders: dict[tuple[str, int, int], DomainEncoder] = {}


@dataclass
class EvalData:
    """The fixed evaluation inputs, the real targets, ground truth, and identity references."""

    names: list[str]
    a: torch.Tensor
    b: torch.Tensor
    gt: torch.Tensor | None
    encoder: DomainEncoder
    reference: dict[str, float] = field(default_factory=dict)


@dataclass
class EvalReport:
    metrics: dict[str, float]
    deploy_score: float
    champion_metrics: dict[str, float] | None
    champion_score: float | None
    deltas: dict[str, float] | None  # challenger minus champion, per metric
    grid: Image.Image
    grid_rows: list[str]
    reference: dict[str, float]
    num_images: int
    image_size: int
    seed: int
    # The translated inputs, for the gate's paired comparison; not part of the saved report.
    outputs: torch.Tensor | None = field(default=None, repr=False)
    champion_outputs: torch.Tensor | None = field(default=None, repr=False)

    @property
    def beats_champion(self) -> bool | None:
        return None if self.champion_score is None else self.deploy_score > self.champion_score

    def to_dict(self) -> dict[str, Any]:
        """Everything but the grid, as plain JSON types."""
        return {
            "metrics": self.metrics,
            "deploy_score": self.deploy_score,
            "champion_metrics": self.champion_metrics,
            "champion_score": self.champion_score,
            "deltas": self.deltas,
            "grid_rows": self.grid_rows,
            "reference": self.reference,
            "num_images": self.num_images,
            "image_size": self.image_size,
            "seed": self.seed,
        }

    def to_markdown(self) -> str:
        has_champion = self.champion_metrics is not None
        head = "| metric | challenger |" + (" champion | delta |" if has_champion else "")
        lines = [f"## Evaluation: deploy score {self.deploy_score:.3f}", "", head]
        lines.append("|---|---|" + ("---|---|" if has_champion else ""))
        for name, value in self.metrics.items():
            row = f"| {name} | {value:.4f} |"
            if self.champion_metrics is not None and self.deltas is not None:
                row += f" {self.champion_metrics.get(name, float('nan')):.4f} |"
                row += f" {self.deltas.get(name, float('nan')):+.4f} |"
            lines.append(row)
        return "\n".join(lines) + "\n"

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write metrics.json, sample_grid.png and report.md; returns name -> path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {n: out / n for n in ("metrics.json", "sample_grid.png", "report.md")}
        paths["metrics.json"].write_text(json.dumps(self.to_dict(), indent=2))
        self.grid.save(paths["sample_grid.png"])
        paths["report.md"].write_text(self.to_markdown())
        return paths


def _pick(paths: list[Path], count: int, seed: int) -> list[Path]:
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed))
    return [paths[int(i)] for i in order[:count]]


def _stack(paths: list[Path], image_size: int) -> torch.Tensor:
    return torch.stack([load_image(p, image_size) for p in paths])


def domain_encoder(root: Path, image_size: int, seed: int) -> DomainEncoder:
    """The data set's A-vs-B encoder, trained once per (data content, size, seed) per process."""
    key = (dataset_digest(root), image_size, seed)
    if key not in _encoders:
        split = "train" if list_images(root / "trainA") and list_images(root / "trainB") else "test"
        a = _stack(_pick(list_images(root / f"{split}A"), ENCODER_TRAIN_IMAGES, seed), image_size)
        b = _stack(_pick(list_images(root / f"{split}B"), ENCODER_TRAIN_IMAGES, seed), image_size)
        _encoders[key] = train_domain_encoder(a, b, seed=seed)
    return _encoders[key]


def load_eval_data(root: str | Path, cfg: EvalConfig, image_size: int | None = None) -> EvalData:
    """The fixed inputs for `cfg` and the identity references (see the module docstring).

    `image_size` None means the native size of the first testA image.

    Raises:
        ValueError: testA or testB has fewer than two images.
    """
    root = Path(root)
    paths_a, paths_b = list_images(root / "testA"), list_images(root / "testB")
    if len(paths_a) < 2 or len(paths_b) < 2:
        raise ValueError(f"{root}: evaluation needs at least two images in testA/ and testB/")
    if image_size is None:
        with Image.open(paths_a[0]) as first:
            image_size = first.size[0]
    chosen = _pick(paths_a, cfg.num_images, cfg.seed)
    a = _stack(chosen, image_size)
    b = _stack(_pick(paths_b, cfg.num_images, cfg.seed + 1), image_size)
    gt_paths = [root / "testB_gt" / p.name for p in chosen]
    gt = _stack(gt_paths, image_size) if all(p.is_file() for p in gt_paths) else None
    data = EvalData([p.name for p in chosen], a, b, gt, domain_encoder(root, image_size, cfg.seed))
    features_b = encode(data.encoder, b)
    data.reference = {
        "kid_identity": kid(encode(data.encoder, a), features_b),
        "hist_identity": histogram_distance(a, b),
        "div_target": mean_pairwise_distance(b) / max(mean_pairwise_distance(a), 1e-8),
    }
    if gt is not None:
        data.reference["ssim_identity"] = float(ssim(a, gt).mean())
    return data


@torch.no_grad()
def translate(
    generator: nn.Module, images: torch.Tensor, device: torch.device | str, batch_size: int
) -> torch.Tensor:
    """G(images) in eval mode, batch by batch, clamped to [-1, 1], back on the CPU."""
    with eval_mode(generator):
        outs = [
            generator(c.to(device)).float().clamp(-1.0, 1.0).cpu() for c in images.split(batch_size)
        ]
    out = torch.cat(outs)
    if out.shape != images.shape:
        raise ValueError(f"generator output {tuple(out.shape)} != input {tuple(images.shape)}")
    return out


def _clip01(value: float) -> float:
    return min(1.0, max(0.0, value))


def score_terms(
    *,
    ssim: float | None,
    kid: float,
    hist_dist: float,
    diversity: float,
    reference: dict[str, float],
) -> dict[str, float]:
    """The score terms and `deploy_score` from the raw metrics: the one home of the formula in
    the module docstring (the gate's bootstrap in model/gate.py recomputes it per resample)."""
    m: dict[str, float] = {}
    m["kid_term"] = _clip01(1.0 - kid / max(reference["kid_identity"], 1e-12))
    m["hist_term"] = _clip01(1.0 - hist_dist / max(reference["hist_identity"], 1e-12))
    m["diversity_guard"] = _clip01(diversity / max(0.5 * reference["div_target"], 1e-8))
    if ssim is not None:
        ssim_id = reference["ssim_identity"]
        m["ssim_term"] = _clip01((ssim - ssim_id) / max(1.0 - ssim_id, 1e-8))
        quality = 0.5 * m["ssim_term"] + 0.3 * m["kid_term"] + 0.2 * m["hist_term"]
    else:
        quality = 0.6 * m["kid_term"] + 0.4 * m["hist_term"]
    m["deploy_score"] = m["diversity_guard"] * quality
    return m


def output_metrics(outputs: torch.Tensor, data: EvalData) -> dict[str, float]:
    """The raw metrics of G(inputs) and their score terms, ending with `deploy_score`."""
    m: dict[str, float] = {}
    if data.gt is not None:
        m["ssim"] = float(ssim(outputs, data.gt).mean())
        m["psnr"] = float(psnr(outputs, data.gt).mean())
    m["kid"] = kid(encode(data.encoder, outputs), encode(data.encoder, data.b))
    m["hist_dist"] = histogram_distance(outputs, data.b)
    m["diversity"] = mean_pairwise_distance(outputs) / max(mean_pairwise_distance(data.a), 1e-8)
    terms = score_terms(
        ssim=m.get("ssim"),
        kid=m["kid"],
        hist_dist=m["hist_dist"],
        diversity=m["diversity"],
        reference=data.reference,
    )
    # Keep the historical order: raw metrics, the terms, then the score last.
    order = ["kid_term", "hist_term", "diversity_guard", "ssim_term", "deploy_score"]
    return {**m, **{k: terms[k] for k in order if k in terms}}


def evaluate(
    generator: nn.Module,
    data: str | Path | EvalData,
    cfg: EvalConfig,
    device: torch.device | str,
    champion: nn.Module | None = None,
    image_size: int | None = None,
) -> EvalReport:
    """Score `generator` (and `champion`, on the same inputs) on the data set at `data`.

    `data` may also be an `EvalData` from `load_eval_data`, to share the loading and the
    encoder between calls. Generators map NCHW [-1, 1] to NCHW [-1, 1] at the same size.
    """
    if not isinstance(data, EvalData):
        data = load_eval_data(data, cfg, image_size)
    outputs = translate(generator, data.a, device, cfg.batch_size)
    metrics = output_metrics(outputs, data)
    k = cfg.grid_images
    rows: list[tuple[str, torch.Tensor]] = [("input", data.a[:k])]
    champion_metrics = deltas = None
    champion_out: torch.Tensor | None = None
    if champion is not None:
        champion_out = translate(champion, data.a, device, cfg.batch_size)
        champion_metrics = output_metrics(champion_out, data)
        deltas = {n: metrics[n] - champion_metrics[n] for n in metrics}
        rows.append(("champion", champion_out[:k]))
    rows.append(("challenger", outputs[:k]))
    if data.gt is not None:
        rows.append(("ground truth", data.gt[:k]))
    return EvalReport(
        metrics=metrics,
        deploy_score=metrics["deploy_score"],
        champion_metrics=champion_metrics,
        champion_score=None if champion_metrics is None else champion_metrics["deploy_score"],
        deltas=deltas,
        grid=make_grid(rows),
        grid_rows=[label for label, _ in rows],
        reference=dict(data.reference),
        num_images=len(data.a),
        image_size=int(data.a.shape[-1]),
        seed=cfg.seed,
        outputs=outputs,
        champion_outputs=champion_out,
    )


def untrained_baseline(
    net_cfg: NetConfig, data: str | Path | EvalData, cfg: EvalConfig, device: torch.device | str
) -> EvalReport:
    """The report of a freshly initialised generator (seeded by `cfg.seed`): the bar a first
    model must clear when there is no champion."""
    from ganops.model.networks import build_generator  # late: networks is the trainer's module

    generator = build_generator(net_cfg, generator=torch.Generator().manual_seed(cfg.seed))
    return evaluate(generator.to(device), data, cfg, device, image_size=net_cfg.image_size)
