"""The gate's confidence: is the challenger better than its rival on these inputs, or lucky?

Both generators translate the same held-out inputs. A paired bootstrap resamples the inputs
(with replacement, the same draw for both) and recomputes each deploy score on the resample,
with the very formula of `model.evaluate.score_terms`; the spread of the differences says how
much of the gap the choice of inputs could explain. The gate passes only when the difference
exceeds `margin` with probability >= `confidence` under that resampling, i.e. when the
(1 - confidence) quantile of the differences is above the margin.

Everything set-level (KID, the colour histogram, the diversity guard) is recomputed per
resample from per-image pieces computed once, so 1000 resamples of 256 inputs take well under
a second.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ganops.model.evaluate import EvalData, score_terms
from ganops.model.metrics import colour_histogram_per_image, encode, ssim


@dataclass(frozen=True)
class Comparison:
    """Challenger minus rival, in deploy score, over `resamples` paired resamples."""

    diff: float  # on the inputs as drawn
    lower: float  # the (1 - confidence) quantile: the one-sided bound the gate uses
    upper: float  # the confidence quantile
    confidence: float
    margin: float
    resamples: int
    num_inputs: int

    @property
    def passed(self) -> bool:
        return self.lower > self.margin

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


class _Pieces:
    """Per-image pieces of one generator's outputs, from which any resample's score follows."""

    def __init__(self, outputs: torch.Tensor, data: EvalData, features_b: torch.Tensor) -> None:
        self.ssim = ssim(outputs, data.gt).double() if data.gt is not None else None
        fx = encode(data.encoder, outputs).double()
        d = fx.shape[1]
        self.kxx = (fx @ fx.T / d + 1.0) ** 3
        self.kxy = ((fx @ features_b.T / d + 1.0) ** 3).mean(dim=1)
        self.hist = colour_histogram_per_image(outputs).double()
        flat = outputs.flatten(1).double()
        self.dist = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])


def _offdiag_mean(matrix: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    sub = matrix[idx][:, idx]
    n = len(idx)
    return (sub.sum() - sub.diagonal().sum()) / (n * (n - 1))


class _Context:
    """What the resamples share: the fixed B side and the inputs' own spread."""

    def __init__(self, data: EvalData) -> None:
        fb = encode(data.encoder, data.b).double()
        d = fb.shape[1]
        kyy = (fb @ fb.T / d + 1.0) ** 3
        m = len(fb)
        self.features_b = fb
        self.kyy = float((kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)))
        self.hist_b = colour_histogram_per_image(data.b).double().mean(dim=0)
        flat = data.a.flatten(1).double()
        self.dist_a = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])
        self.reference = data.reference

    def score(self, p: _Pieces, idx: torch.Tensor) -> float:
        kid = float(_offdiag_mean(p.kxx, idx) + self.kyy - 2.0 * p.kxy[idx].mean())
        hist = float(0.5 * (p.hist[idx].mean(dim=0) - self.hist_b).abs().sum())
        spread_a = float(_offdiag_mean(self.dist_a, idx))
        diversity = float(_offdiag_mean(p.dist, idx)) / max(spread_a, 1e-8)
        ssim_mean = float(p.ssim[idx].mean()) if p.ssim is not None else None
        terms = score_terms(
            ssim=ssim_mean, kid=kid, hist_dist=hist, diversity=diversity, reference=self.reference
        )
        return terms["deploy_score"]


def compare(
    challenger: torch.Tensor,
    rival: torch.Tensor,
    data: EvalData,
    *,
    resamples: int = 1000,
    confidence: float = 0.9,
    margin: float = 0.0,
    seed: int = 0,
) -> Comparison:
    """Paired bootstrap of the deploy-score difference between two generators' outputs on the
    inputs of `data` (NCHW [-1, 1], in the same order).

    Raises:
        ValueError: on fewer than 3 inputs, mismatched outputs or a confidence outside (0.5, 1).
    """
    n = len(challenger)
    if n < 3 or rival.shape != challenger.shape:
        raise ValueError("compare needs at least 3 inputs and outputs of the same shape")
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0.5, 1), got {confidence}")
    ctx = _Context(data)
    mine, theirs = _Pieces(challenger, data, ctx.features_b), _Pieces(rival, data, ctx.features_b)
    everything = torch.arange(n)
    diff = ctx.score(mine, everything) - ctx.score(theirs, everything)
    rng = torch.Generator().manual_seed(seed)
    diffs = []
    for _ in range(resamples):
        idx = torch.randint(n, (n,), generator=rng)
        diffs.append(ctx.score(mine, idx) - ctx.score(theirs, idx))
    spread = torch.tensor(diffs, dtype=torch.float64)
    lower, upper = torch.quantile(
        spread, torch.tensor([1 - confidence, confidence], dtype=torch.float64)
    )
    return Comparison(
        diff=diff,
        lower=float(lower),
        upper=float(upper),
        confidence=confidence,
        margin=margin,
        resamples=resamples,
        num_inputs=n,
    )


__all__ = ["Comparison", "compare"]
