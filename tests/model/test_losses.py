from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganops.model.losses import GANLoss, PatchNCELoss, cycle_loss, identity_loss


def test_gan_loss_targets_are_buffers_that_move_with_the_module() -> None:
    loss = GANLoss("lsgan")
    assert {name for name, _ in loss.named_buffers()} == {"real_label", "fake_label"}
    moved = loss.to(torch.float64)
    assert moved.real_label.dtype == torch.float64
    assert "real_label" in loss.state_dict()


@pytest.mark.parametrize("mode", ["lsgan", "vanilla"])
def test_gan_loss_is_low_when_the_prediction_matches_the_target(mode: str) -> None:
    loss = GANLoss(mode)
    confident_real = torch.full((2, 1, 4, 4), 1.0 if mode == "lsgan" else 8.0)
    confident_fake = torch.full((2, 1, 4, 4), 0.0 if mode == "lsgan" else -8.0)
    assert loss(confident_real, True) < 0.01
    assert loss(confident_fake, False) < 0.01
    assert loss(confident_real, False) > 0.5
    assert loss(confident_fake, True) > 0.5


def test_lsgan_loss_is_the_mean_squared_error() -> None:
    pred = torch.tensor([[0.5, -1.0]])
    assert torch.isclose(GANLoss("lsgan")(pred, True), torch.tensor((0.25 + 4.0) / 2))


def test_gan_loss_accepts_bf16_predictions_and_returns_float32() -> None:
    out = GANLoss()(torch.ones(1, 1, 2, 2, dtype=torch.bfloat16), True)
    assert out.dtype == torch.float32


def test_gan_loss_rejects_unknown_modes() -> None:
    with pytest.raises(ValueError, match="unknown gan mode"):
        GANLoss("wgan")


def _unit(*shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(0)), dim=-1)


def test_patch_nce_is_lower_for_matching_features() -> None:
    keys = _unit(2, 32, 16)
    nce = PatchNCELoss(temperature=0.07)
    matching = nce(keys.clone(), keys)
    unrelated = nce(_unit(2, 32, 16).roll(1, dims=1), keys)
    assert matching < 0.1
    assert unrelated > matching + 1.0


def test_patch_nce_trains_only_the_queries() -> None:
    queries = _unit(1, 8, 4).requires_grad_()
    keys = _unit(1, 8, 4).requires_grad_()
    PatchNCELoss()(queries, keys).backward()
    assert queries.grad is not None
    assert keys.grad is None


def test_l1_losses() -> None:
    a, b = torch.zeros(2, 3), torch.ones(2, 3)
    assert cycle_loss(a, b) == 1.0
    assert identity_loss(a, a) == 0.0


def upstream_patch_nce(feat_q: torch.Tensor, feat_k: torch.Tensor, t: float) -> torch.Tensor:
    """CUT's PatchNCELoss (taesungp/contrastive-unpaired-translation, models/patchnce.py) with
    negatives from the query's own image, written out as upstream does."""
    _, patches, dim = feat_q.shape
    feat_k = feat_k.detach()
    l_pos = torch.bmm(feat_q.reshape(-1, 1, dim), feat_k.reshape(-1, dim, 1)).view(-1, 1)
    l_neg = torch.bmm(feat_q, feat_k.transpose(2, 1))
    diagonal = torch.eye(patches, dtype=torch.bool)[None]
    l_neg = l_neg.masked_fill(diagonal, -10.0).view(-1, patches)
    out = torch.cat((l_pos, l_neg), dim=1) / t
    target = torch.zeros(out.size(0), dtype=torch.long)
    return torch.nn.functional.cross_entropy(out, target)


def test_patch_nce_equals_upstreams_formula() -> None:
    gen = torch.Generator().manual_seed(3)
    queries = torch.nn.functional.normalize(torch.randn(3, 64, 16, generator=gen), dim=-1)
    keys = torch.nn.functional.normalize(torch.randn(3, 64, 16, generator=gen), dim=-1)
    queries.requires_grad_(True)
    ours = PatchNCELoss(0.07)(queries, keys)
    (grad_ours,) = torch.autograd.grad(ours, queries)
    theirs = upstream_patch_nce(queries, keys, 0.07)
    (grad_theirs,) = torch.autograd.grad(theirs, queries)
    assert float(ours.detach()) == pytest.approx(float(theirs.detach()), rel=1e-6)
    assert torch.allclose(grad_ours, grad_theirs, atol=1e-7)
    # Matching features (each query is its own key) give a far lower loss than random ones.
    assert float(PatchNCELoss(0.07)(keys, keys)) < float(theirs) / 10


def test_patch_nce_runs_in_float32_under_bf16_autocast() -> None:
    # Before the loss turned autocast off, CPU bf16 autocast ran its bmm in bf16 here: logits
    # off by up to 0.035, the loss by 2.5e-5 relative, the query gradients by 0.6% of their
    # largest; each check below failed.
    gen = torch.Generator().manual_seed(5)
    queries = F.normalize(torch.randn(2, 128, 64, generator=gen), dim=-1).requires_grad_()
    keys = F.normalize(torch.randn(2, 128, 64, generator=gen), dim=-1)
    nce = PatchNCELoss(0.07)
    reference = nce(queries, keys)
    (grad_reference,) = torch.autograd.grad(reference, queries)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = nce(queries, keys)
    (grad_mixed,) = torch.autograd.grad(mixed, queries)
    assert mixed.dtype == torch.float32
    assert float(mixed.detach()) == pytest.approx(float(reference.detach()), rel=1e-6)
    assert torch.allclose(grad_mixed, grad_reference, rtol=1e-5, atol=1e-9)
    # bf16 inputs (an autocast MLP's output) are widened, not rounded further.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        from_bf16 = nce(queries.detach().bfloat16(), keys.bfloat16())
    exact = nce(queries.detach().bfloat16().float(), keys.bfloat16().float())
    assert float(from_bf16) == pytest.approx(float(exact), rel=1e-6)
