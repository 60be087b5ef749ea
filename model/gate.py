"""The gate's confidence: is the challenger better than its rival on these inputs, or lucky?

Both generators translate the same held-out inputs. A paired bootstrap resamples the inputs
(with replacement, the same draw for both) and recomputes each deploy score on the resample,
with the very formula of `model.evaluate.score_terms`; the spread of the differences says how
much of the gap the choice of inputs could explain. The gate passes only when the difference
exceeds `margin` with probability >= `confidence` under that resampling, i.e. when the
(1 - confidence) quantile of the differences is above the margin.

Everything set-level (KID, the colour histogram, the diversity guard) is recomputed per
resample from per-image pieces computed once, as products of the per-image pieces with each
resample's draw counts: 1000 resamples of 256 inputs are a few matrix products (a loop of
gathers per resample took 9 s on a busy 2-core machine).
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

    def scores(self, p: _Pieces, counts: torch.Tensor) -> list[float]:
        """The deploy score on each resample, given as a row of `counts` (how often each input
        was drawn): every set-level mean is a product with the counts, so all resamples are a
        few matrix products instead of a Python loop of gathers."""
        n = counts.shape[1]

        def offdiag_mean(matrix: torch.Tensor) -> torch.Tensor:
            # Sum of matrix[idx][:, idx] off its diagonal: c^T M c less the drawn diagonal.
            full = ((counts @ matrix) * counts).sum(dim=1)
            return (full - counts @ matrix.diagonal()) / (n * (n - 1))

        kid = offdiag_mean(p.kxx) + self.kyy - 2.0 * (counts @ p.kxy) / n
        hist = 0.5 * ((counts @ p.hist) / n - self.hist_b).abs().sum(dim=1)
        diversity = offdiag_mean(p.dist) / offdiag_mean(self.dist_a).clamp_min(1e-8)
        ssim_mean = (counts @ p.ssim / n).tolist() if p.ssim is not None else None
        return [
            score_terms(
                ssim=ssim_mean[r] if ssim_mean is not None else None,
                kid=float(kid[r]),
                hist_dist=float(hist[r]),
                diversity=float(diversity[r]),
                reference=self.reference,
            )["deploy_score"]
            for r in range(len(counts))
        ]


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
    everything = torch.ones(1, n, dtype=torch.float64)
    diff = ctx.scores(mine, everything)[0] - ctx.scores(theirs, everything)[0]
    rng = torch.Generator().manual_seed(seed)
    draws = torch.stack([torch.randint(n, (n,), generator=rng) for _ in range(resamples)])
    counts = torch.zeros(resamples, n, dtype=torch.float64)
    counts.scatter_add_(1, draws, torch.ones(draws.shape, dtype=torch.float64))
    spread = torch.tensor(ctx.scores(mine, counts), dtype=torch.float64) - torch.tensor(
        ctx.scores(theirs, counts), dtype=torch.float64
    )
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
