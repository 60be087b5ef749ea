"""GAN, PatchNCE, cycle and identity losses."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GAN_MODES: tuple[str, ...] = ("lsgan", "vanilla")


class GANLoss(nn.Module):
    """The adversarial loss against a constant real or fake target.

    The targets are buffers, so `.to(device)` moves them with the module and no tensor is
    built per call. Predictions are compared in float32, so bf16 autocast outputs are fine.
    """

    real_label: Tensor
    fake_label: Tensor

    def __init__(self, mode: str = "lsgan", real_label: float = 1.0, fake_label: float = 0.0):
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"unknown gan mode {mode!r}; choose one of {', '.join(GAN_MODES)}")
        self.mode = mode
        self.register_buffer("real_label", torch.tensor(real_label))
        self.register_buffer("fake_label", torch.tensor(fake_label))

    def forward(self, prediction: Tensor, target_is_real: bool) -> Tensor:
        prediction = prediction.float()
        target = (self.real_label if target_is_real else self.fake_label).expand_as(prediction)
        if self.mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


class PatchNCELoss(nn.Module):
    """InfoNCE between query patches and key patches at the same positions (CUT).

    Each query's positive is the key at its own position; the negatives are the other
    positions of the same image, as CUT recommends for unpaired translation.
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, feat_q: Tensor, feat_k: Tensor) -> Tensor:
        """Mean loss over all patches. Both inputs are (B, P, C) and L2-normalised.

        Upstream builds (B*P, 1 + P) logits: the positive, then every key with the query's own
        (the positive again) masked to -10. After the division by the temperature that entry
        is exp(-10 / 0.07) ~ 1e-62 of a softmax, zero in float32, so it contributes nothing:
        the (B, P, P) similarity matrix, whose diagonal holds the positives, with the diagonal
        as the target, is the same loss without the mask and the concatenation (each a pass
        over the (B, P, P) logits) or the positives' separate product
        (`test_patch_nce_equals_upstreams_formula`).

        The logits and the cross-entropy run in float32 whatever the caller's autocast: inside
        autocast `.float()` alone does not help, since autocast casts bmm's inputs back to
        bf16 (8 bits of mantissa: up to ~0.04 per logit after the division by 0.07, measured on
        CPU), which blurs the small similarity differences the loss ranks by.
        """
        kind = feat_q.device.type  # "meta" (FLOP counting) has no autocast to turn off
        off = torch.autocast(kind, enabled=False) if torch.amp.is_autocast_available(kind) else None
        with off or contextlib.nullcontext():
            feat_q = feat_q.float()
            feat_k = feat_k.detach().float()
            batch, patches = feat_q.shape[:2]
            logits = torch.bmm(feat_q, feat_k.transpose(1, 2)).flatten(0, 1) / self.temperature
            target = torch.arange(patches, device=logits.device).repeat(batch)
            return F.cross_entropy(logits, target)


def reconstruction_loss(output: Tensor, target: Tensor) -> Tensor:
    """L1 in float32. CycleGAN uses it twice, under two names:

    - `cycle_loss(G_B(G_A(a)), a)`: the round trip through both generators returns the input;
    - `identity_loss(G_A(b), b)`: a target-domain image passes through unchanged.
    """
    return F.l1_loss(output.float(), target.float())


cycle_loss = reconstruction_loss
identity_loss = reconstruction_loss
