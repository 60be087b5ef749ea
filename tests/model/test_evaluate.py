from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import ganops.model.evaluate as evaluate_module
from ganops.model.config import EvalConfig, preset
from ganops.model.data import make_synthetic
from ganops.model.evaluate import EvalData, evaluate, load_eval_data, untrained_baseline
from ganops.model.metrics import histogram_distance, kid, mean_pairwise_distance, psnr, ssim

CFG = EvalConfig(seed=7, num_images=24, batch_size=8, grid_images=4)


class Oracle(nn.Module):
    """Returns the true translation of each evaluation input (looked up by exact match)."""

    def __init__(self, inputs: torch.Tensor, truth: torch.Tensor) -> None:
        super().__init__()
        self.inputs, self.truth = inputs.flatten(1), truth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = torch.cdist(x.flatten(1), self.inputs).argmin(1)
        return self.truth[index]


class Constant(nn.Module):
    """A collapsed generator: the same picture whatever the input."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.image = image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.image.expand_as(x)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("eval") / "data", n_train=96, n_test=24)


@pytest.fixture(scope="module")
def data(root: Path) -> EvalData:
    return load_eval_data(root, CFG)


def test_ssim_and_psnr_extremes() -> None:
    torch.manual_seed(0)
    image = torch.rand(4, 3, 32, 32) * 2 - 1
    assert ssim(image, image).tolist() == pytest.approx([1.0] * 4, abs=1e-6)
    noise = torch.rand(4, 3, 32, 32) * 2 - 1
    assert float(ssim(image, noise).mean()) < 0.2
    assert ssim(image, noise).tolist() == pytest.approx(ssim(noise, image).tolist(), abs=1e-6)
    slightly = (image + 0.05 * torch.randn_like(image)).clamp(-1, 1)
    assert 0.5 < float(ssim(image, slightly).mean()) < 1.0
    assert psnr(image, image).tolist() == [100.0] * 4
    assert float(psnr(image, slightly).mean()) > float(psnr(image, noise).mean()) + 10
    with pytest.raises(ValueError, match="equal shapes"):
        ssim(image, image[:, :, :16])


def test_kid_separates_distributions() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 16, generator=gen), torch.randn(200, 16, generator=gen)
    assert abs(kid(x, y)) < 0.05
    assert kid(x, y + 1.0) > 0.5
    assert kid(x, y * 2.0) > kid(x, y * 1.2) > kid(x, y) - 0.01


def test_diversity_and_histograms() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, 16, 16, generator=gen) * 2 - 1
    assert mean_pairwise_distance(images[:1].expand(8, -1, -1, -1)) == 0.0
    assert mean_pairwise_distance(images) > 0.3
    assert histogram_distance(images, images) == 0.0
    assert histogram_distance(images, -torch.ones_like(images)) > 0.9


@pytest.mark.slow
def test_identity_scores_zero_and_the_oracle_near_one(data: EvalData) -> None:
    assert data.gt is not None
    identity = evaluate(nn.Identity(), data, CFG, "cpu")
    oracle = evaluate(Oracle(data.a, data.gt), data, CFG, "cpu")
    assert identity.deploy_score < 0.05
    assert oracle.deploy_score > 0.8
    assert oracle.metrics["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert identity.metrics["ssim"] < 0.6
    assert oracle.metrics["kid"] < identity.metrics["kid"]
    assert oracle.metrics["hist_dist"] < identity.metrics["hist_dist"]


@pytest.mark.slow  # a full evaluation
def test_a_collapsed_generator_is_caught(data: EvalData) -> None:
    assert data.gt is not None
    collapsed = evaluate(Constant(data.gt[0]), data, CFG, "cpu")
    assert collapsed.metrics["diversity"] == 0.0
    assert collapsed.deploy_score == 0.0


@pytest.mark.slow  # a full evaluation
def test_untrained_generator_scores_low(data: EvalData) -> None:
    report = untrained_baseline(preset("tiny"), data, CFG, "cpu")
    assert report.deploy_score < 0.2
    assert report.metrics["ssim"] < 0.3


@pytest.mark.slow  # a full evaluation
def test_champion_comparison_grid_and_report(data: EvalData, tmp_path: Path) -> None:
    assert data.gt is not None
    oracle = Oracle(data.a, data.gt)
    report = evaluate(nn.Identity(), data, CFG, "cpu", champion=oracle)
    assert report.champion_metrics is not None
    assert report.deltas is not None
    assert report.champion_score == report.champion_metrics["deploy_score"]
    assert report.deltas["ssim"] == pytest.approx(report.metrics["ssim"] - 1.0, abs=1e-6)
    assert report.beats_champion is False
    assert report.grid_rows == ["input", "champion", "challenger", "ground truth"]
    # Four rows of `grid_images` cells: the grid is wider than tall, and rows are distinct.
    width, height = report.grid.size
    assert width > height > 4 * 32
    json.dumps(report.to_dict())
    paths = report.save(tmp_path / "eval")
    assert json.loads(paths["metrics.json"].read_text())["deploy_score"] == report.deploy_score
    assert "| ssim |" in paths["report.md"].read_text()
    assert paths["sample_grid.png"].stat().st_size > 1000


@pytest.mark.slow  # two full evaluations: ~8 s
def test_evaluation_is_repeatable(root: Path) -> None:
    generator = nn.Conv2d(3, 3, 3, padding=1)
    torch.nn.init.normal_(generator.weight, 0.0, 0.1, generator=torch.Generator().manual_seed(1))
    first = evaluate(generator, root, CFG, "cpu").metrics
    assert evaluate(generator, root, CFG, "cpu").metrics == first
    # The domain encoder is retrained from its seed to the same weights.
    evaluate_module._encoders.clear()
    assert evaluate(generator, root, CFG, "cpu").metrics == first
    reseeded = evaluate(generator, root, EvalConfig(seed=8, num_images=24), "cpu").metrics
    assert reseeded != first  # another seed, other inputs


@pytest.mark.slow  # a full evaluation: seconds
def test_without_ground_truth_the_score_uses_distribution_metrics(
    root: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(root, tmp_path / "nogt"))
    shutil.rmtree(copy / "testB_gt")
    report = evaluate(nn.Identity(), copy, CFG, "cpu")
    assert "ssim" not in report.metrics
    assert "ground truth" not in report.grid_rows
    assert report.deploy_score < 0.05
