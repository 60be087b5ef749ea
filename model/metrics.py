"""Offline image metrics: SSIM, PSNR, KID on our own encoder, diversity, colour histograms.

Nothing here downloads weights. Inception-based FID/KID and LPIPS are out of reach offline, so
KID runs on the penultimate features of `DomainEncoder`, a small CNN trained for a few seconds
to tell domain A from domain B of the data set under evaluation. Its features are exactly the
ones that separate the two styles, which is what "looks like B" should measure. Its accuracy is
never a gate (a collapsed generator would ace it); only the feature distributions are compared.

All images are NCHW tensors in [-1, 1].
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(
    x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004): gaussian window, valid convolution, channel mean.

    Returns a tensor of shape (N,). The window shrinks (odd) for images smaller than it.
    """
    if x.shape != y.shape:
        raise ValueError(f"ssim needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    size = min(window, x.shape[-1], x.shape[-2])
    size -= 1 - size % 2
    channels = x.shape[1]
    kernel = gaussian_window(size, sigma).to(torch.float64)
    kernel = kernel.expand(channels, 1, size, size).contiguous()
    x, y = x.to(torch.float64), y.to(torch.float64)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).mean(dim=(1, 2, 3)).float()


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Per-image PSNR in dB, capped at 100 for identical images."""
    mse = ((x.double() - y.double()) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return (10.0 * torch.log10(data_range**2 / mse)).clamp(max=100.0).float()


def kid(fx: torch.Tensor, fy: torch.Tensor) -> float:
    """Kernel Inception Distance on given features: the unbiased MMD² estimate with the cubic
    polynomial kernel k(a, b) = (a·b / d + 1)³ (Bińkowski et al. 2018), on the full sets."""
    if len(fx) < 2 or len(fy) < 2:
        raise ValueError("kid needs at least two samples on each side")
    x, y = fx.double(), fy.double()
    d = x.shape[1]

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a @ b.T / d + 1.0) ** 3

    m, n = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(xx + yy - 2.0 * k(x, y).mean())


def mean_pairwise_distance(images: torch.Tensor) -> float:
    """Mean RMS pixel distance over all pairs: how different the images are from each other."""
    if len(images) < 2:
        return 0.0
    flat = images.flatten(1).double()
    dist = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])
    n = len(flat)
    return float(dist.sum() / (n * (n - 1)))


def colour_histogram_per_image(images: torch.Tensor, bins: int = 8) -> torch.Tensor:
    """Each image's joint RGB histogram, normalised to sum 1: (N, bins³)."""
    q = ((images.clamp(-1.0, 1.0) + 1.0) / 2.0 * bins).long().clamp(0, bins - 1)
    index = ((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]).flatten(1)
    offsets = torch.arange(len(images))[:, None] * bins**3
    counts = torch.bincount((index + offsets).flatten(), minlength=len(images) * bins**3)
    per_image = counts.double().reshape(len(images), bins**3)
    return per_image / per_image.sum(dim=1, keepdim=True)


def colour_histogram(images: torch.Tensor, bins: int = 8) -> torch.Tensor:
    """Joint RGB histogram of all pixels of the set, normalised to sum 1 (bins³ entries).
    Images of one size weigh the same, so this is the mean of the per-image histograms."""
    return colour_histogram_per_image(images, bins).mean(dim=0)


def histogram_distance(x: torch.Tensor, y: torch.Tensor, bins: int = 8) -> float:
    """Total-variation distance between the sets' colour histograms, in [0, 1]."""
    return float(0.5 * (colour_histogram(x, bins) - colour_histogram(y, bins)).abs().sum())


def image_statistics(images: torch.Tensor) -> torch.Tensor:
    """Nine hand-made statistics per image: channel means and stds, edge energy, high-frequency
    (Laplacian) energy, saturation. They pin down what a learned A-vs-B feature may ignore,
    such as noise or a colour cast far from both domains."""
    x = (images.float() + 1.0) / 2.0
    luma = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    edges = luma.diff(dim=1).abs().mean((1, 2)) + luma.diff(dim=2).abs().mean((1, 2))
    centre = luma[:, 1:-1, 1:-1]
    around = luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1] + luma[:, 1:-1, :-2] + luma[:, 1:-1, 2:]
    laplacian = (4.0 * centre - around).abs().mean((1, 2))
    high, low = x.max(1).values, x.min(1).values
    saturation = ((high - low) / high.clamp_min(1e-3)).mean((1, 2))
    columns = [x.mean((2, 3)), x.std((2, 3)), torch.stack([edges, laplacian, saturation], 1)]
    return torch.cat(columns, 1)


N_STATISTICS = 9


class DomainEncoder(nn.Module):
    """A small CNN trained to tell A from B, plus fixed image statistics.

    `features` (what KID uses) = [pooled conv features, image statistics], each block z-scored
    on the training images and scaled to the same total weight, so that neither the learned
    nor the hand-made half dominates the polynomial kernel.
    """

    feature_mean: torch.Tensor
    feature_scale: torch.Tensor

    def __init__(self, width: int = 32, features: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width * 2, features, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.head = nn.Linear(features, 1)
        dims = features + N_STATISTICS
        self.register_buffer("feature_mean", torch.zeros(dims))
        self.register_buffer("feature_scale", torch.ones(dims))

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.body(x).mean(dim=(2, 3)), image_statistics(x)], 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return (self.raw_features(x) - self.feature_mean) * self.feature_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3))).squeeze(1)

    def standardise(self, seen: torch.Tensor) -> None:
        """Set the feature mean and per-block scale from raw features of training images."""
        learned = seen.shape[1] - N_STATISTICS
        block = torch.full((seen.shape[1],), math.sqrt(seen.shape[1] / 2))
        block[:learned] /= math.sqrt(learned)
        block[learned:] /= math.sqrt(N_STATISTICS)
        self.feature_mean.copy_(seen.mean(0))
        self.feature_scale.copy_(block / seen.std(0).clamp_min(1e-6))


ENCODER_SIZE = 64  # the encoder sees at most 64 px: cheap on CPU at any image size


def encoder_input(images: torch.Tensor) -> torch.Tensor:
    if images.shape[-1] <= ENCODER_SIZE:
        return images
    return F.interpolate(images, size=ENCODER_SIZE, mode="area")


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run tiny CPU work on one thread: with busy cores, torch's thread pool makes small
    convolutions up to 100x slower, and one thread also makes the results repeatable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_domain_encoder(
    a: torch.Tensor, b: torch.Tensor, seed: int = 0, steps: int = 120, batch_size: int = 32
) -> DomainEncoder:
    """Train the encoder to tell `a` (label 0) from `b` (label 1), on CPU, reproducibly."""
    with one_thread():
        return _train_encoder(
            encoder_input(a.cpu()), encoder_input(b.cpu()), seed, steps, batch_size
        )


def _train_encoder(
    a: torch.Tensor, b: torch.Tensor, seed: int, steps: int, batch_size: int
) -> DomainEncoder:
    rng = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = DomainEncoder()
    optim = torch.optim.Adam(encoder.parameters(), lr=2e-3)
    half = batch_size // 2
    labels = torch.cat([torch.zeros(half), torch.ones(half)])
    encoder.train()
    for _ in range(steps):
        ia = torch.randint(len(a), (half,), generator=rng)
        ib = torch.randint(len(b), (half,), generator=rng)
        logits = encoder(torch.cat([a[ia], b[ib]]))
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
    encoder.eval()
    with torch.no_grad():
        seen = torch.cat([encoder.raw_features(c) for c in torch.cat([a, b]).split(128)])
    encoder.standardise(seen)
    return encoder


@torch.no_grad()
def encode(encoder: DomainEncoder, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The encoder's standardised features of `images` (computed on the CPU)."""
    images = encoder_input(images.cpu())
    with one_thread():
        return torch.cat([encoder.features(c) for c in images.split(batch_size)])
