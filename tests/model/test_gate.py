"""The gate's paired bootstrap on constructed cases: a clear win, a tie, noise, a loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ganops.model.config import EvalConfig
from ganops.model.data import make_synthetic
from ganops.model.evaluate import EvalData, load_eval_data, output_metrics
from ganops.model.gate import compare

# Each test scores 96 images and bootstraps the comparison: 3-6 s each on 2 shared cores.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> EvalData:
    root = make_synthetic(tmp_path_factory.mktemp("gate"), n_train=64, n_test=96, image_size=32)
    return load_eval_data(Path(root), EvalConfig(num_images=96), 32)


def _noisy(images: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return (images + sigma * noise).clamp(-1.0, 1.0)


def test_the_resampled_score_on_all_inputs_is_the_reported_score(data: EvalData) -> None:
    assert data.gt is not None
    good, bad = _noisy(data.gt, 0.05, 1), data.a
    result = compare(good, bad, data, resamples=50)
    expected = (
        output_metrics(good, data)["deploy_score"] - output_metrics(bad, data)["deploy_score"]
    )
    assert result.diff == pytest.approx(expected, abs=1e-6)


def test_a_clear_win_passes_with_a_tight_interval(data: EvalData) -> None:
    assert data.gt is not None
    near_truth, identity = _noisy(data.gt, 0.05, 1), data.a
    result = compare(near_truth, identity, data, resamples=200, margin=0.05)
    assert result.diff > 0.3
    assert result.lower > 0.05
    assert result.lower <= result.diff <= result.upper
    assert result.passed
    assert compare(identity, near_truth, data, resamples=200).passed is False


def test_identical_models_do_not_pass_any_margin(data: EvalData) -> None:
    assert data.gt is not None
    outputs = _noisy(data.gt, 0.2, 3)
    result = compare(outputs, outputs.clone(), data, resamples=200)
    assert result.diff == 0.0
    assert result.lower == 0.0
    assert not result.passed  # 0 is not above a margin of 0


def test_a_tiny_edge_within_the_noise_is_not_enough(data: EvalData) -> None:
    # Two equally good models with independent noise: whichever is ahead on these inputs,
    # the gap is within what resampling the inputs explains.
    assert data.gt is not None
    first, second = _noisy(data.gt, 0.25, 10), _noisy(data.gt, 0.25, 11)
    forward = compare(first, second, data, resamples=200, margin=0.0)
    backward = compare(second, first, data, resamples=200, margin=0.0)
    assert not (forward.passed and backward.passed)
    assert forward.lower < 0.0 or backward.lower < 0.0


def test_the_bootstrap_is_seeded_and_checks_its_inputs(data: EvalData) -> None:
    assert data.gt is not None
    x, y = _noisy(data.gt, 0.1, 1), _noisy(data.gt, 0.3, 2)
    assert compare(x, y, data, resamples=100, seed=4) == compare(x, y, data, resamples=100, seed=4)
    with pytest.raises(ValueError, match="same shape"):
        compare(x, y[:10], data)
    with pytest.raises(ValueError, match="confidence"):
        compare(x, y, data, confidence=1.0)


@pytest.mark.parametrize(("lower", "margin"), [(0.02, 0.0), (0.0, 0.0), (-0.01, 0.0), (0.03, 0.05)])
def test_the_pipelines_bar_is_passed_exactly_when_the_comparison_passes(
    lower: float, margin: float
) -> None:
    from ganops.model.gate import Comparison
    from ganops.pipeline.steps.evaluate import gate_bar

    result = Comparison(
        diff=0.04, lower=lower, upper=0.08, confidence=0.9, margin=margin, resamples=10,
        num_inputs=256,
    )  # fmt: skip
    score = 0.61
    assert (score > gate_bar(score, result, float("-inf"))) == result.passed
    assert not score > gate_bar(score, result, 0.7)  # the floor still applies


def test_each_resamples_score_is_the_score_of_the_resampled_inputs(data: EvalData) -> None:
    # The bootstrap scores a draw through its counts (matrix products); it must equal the
    # deploy score of the drawn inputs themselves, duplicates included.
    import dataclasses

    from ganops.model.gate import _Context, _Pieces

    assert data.gt is not None
    outputs = _noisy(data.gt, 0.1, 4)
    draws = torch.randint(
        len(outputs), (2, len(outputs)), generator=torch.Generator().manual_seed(2)
    )
    assert len(set(draws[0].tolist())) < len(outputs)  # some inputs drawn twice
    counts = torch.zeros(2, len(outputs), dtype=torch.float64)
    counts.scatter_add_(1, draws, torch.ones(draws.shape, dtype=torch.float64))
    ctx = _Context(data)
    scores = ctx.scores(_Pieces(outputs, data, ctx.features_b), counts)
    for draw, score in zip(draws, scores, strict=True):
        drawn = dataclasses.replace(data, a=data.a[draw], gt=data.gt[draw])
        assert score == pytest.approx(
            output_metrics(outputs[draw], drawn)["deploy_score"], abs=1e-6
        )
