"""The two-sample statistics behind the drift score: Gaussian-kernel MMD² and KS distances.

Kept apart from `model.drift` (profiles, calibration, the online window) because both the
calibration loop and the server's window evaluation run them, thousands of times in the first
case, so they are written as a few vectorised numpy calls each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Thresholds:
    """A calibration's outcome: the kernel bandwidth and the three thresholds."""

    bandwidth: float  # Gaussian kernel sigma on standardised features
    mmd_threshold: float  # MMD² at the (1 - level/2) null quantile
    ks_critical: np.ndarray  # per feature: the KS distance at level / (2 d)
    scale: float  # the combined ratio's (1 - level) null quantile
    measured_fpr: float  # on simulated windows independent of those that set `scale`


@dataclass(frozen=True)
class DriftScore:
    """One evaluation of the window against the reference."""

    score: float  # the drift statistic / its calibrated threshold; > 1 means drift
    mmd2: float
    mmd_score: float
    feature_scores: dict[str, float]  # KS distance / its Bonferroni threshold, same scale
    window_fill: float
    ready: bool  # False until the window is full; the scores are then 0


def rbf_kernel(x: np.ndarray, y: np.ndarray, bandwidth: float) -> np.ndarray:
    """exp(-|x - y|² / (2 sigma²)) for every row pair."""
    sq = (x * x).sum(axis=1)[:, None] + (y * y).sum(axis=1)[None, :] - 2.0 * (x @ y.T)
    return np.asarray(np.exp(-np.maximum(sq, 0.0) / (2.0 * bandwidth * bandwidth)))


def offdiag_mean(square: np.ndarray) -> float:
    n = len(square)
    return float((square.sum() - np.trace(square)) / (n * (n - 1)))


def mmd2_from_kernel(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """The unbiased MMD² estimate (Gretton et al. 2012, eq. 3) from the three kernel blocks."""
    return offdiag_mean(kxx) + offdiag_mean(kyy) - 2.0 * float(kxy.mean())


def ks_statistics(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two-sample KS distance sup|F_x - F_y| for each column of x (n x d) and y (m x d).

    Equal to `scipy.stats.ks_2samp(x[:, j], y[:, j]).statistic` for every j, but one sort and
    two searchsorted calls for all columns: each column is shifted into its own disjoint
    interval, so a single sorted array holds every column's values in column order.
    """
    n, d = x.shape
    m = y.shape[0]
    low = min(float(x.min()), float(y.min()))
    span = max(float(x.max()), float(y.max())) - low + 1.0
    offsets = np.arange(d) * span
    xs = np.sort(((x - low) + offsets).T.ravel())
    ys = np.sort(((y - low) + offsets).T.ravel())
    points = np.concatenate([xs, ys])
    column = np.concatenate([np.repeat(np.arange(d), n), np.repeat(np.arange(d), m)])
    cdf_x = (np.searchsorted(xs, points, side="right") - column * n) / n
    cdf_y = (np.searchsorted(ys, points, side="right") - column * m) / m
    gaps = np.abs(cdf_x - cdf_y)
    return np.maximum(
        gaps[: n * d].reshape(d, n).max(axis=1), gaps[n * d :].reshape(d, m).max(axis=1)
    )


def split_masks(
    n: int, n_ref: int, window: int, trials: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`trials` random disjoint (reference, window) splits of n points, as 0/1 row masks."""
    ranks = rng.random((trials, n)).argsort(axis=1).argsort(axis=1)
    ref = (ranks < n_ref).astype(np.float64)
    win = ((ranks >= n_ref) & (ranks < n_ref + window)).astype(np.float64)
    return ref, win


def split_mmd2(kernel: np.ndarray, ref: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Unbiased MMD² of every split (rows of the masks) from the pooled kernel matrix.

    a'Ka sums a block; the diagonal (k(x, x) = 1) is taken out of the within-sample sums.
    """
    n_ref, n_win = ref.sum(axis=1), win.sum(axis=1)
    k_ref, k_win = ref @ kernel, win @ kernel
    s_rr = (k_ref * ref).sum(axis=1) - n_ref
    s_ww = (k_win * win).sum(axis=1) - n_win
    s_rw = (k_ref * win).sum(axis=1)
    return np.asarray(
        s_rr / (n_ref * (n_ref - 1)) + s_ww / (n_win * (n_win - 1)) - 2.0 * s_rw / (n_ref * n_win)
    )


def split_ks(pool: np.ndarray, ref: np.ndarray, win: np.ndarray) -> np.ndarray:
    """KS distance of every split and feature (trials x d): walk each feature's sorted pool
    with the difference of the two empirical CDFs, read at the end of each run of ties."""
    weights = ref / ref.sum(axis=1, keepdims=True) - win / win.sum(axis=1, keepdims=True)
    out = np.empty((len(ref), pool.shape[1]))
    for j in range(pool.shape[1]):
        order = np.argsort(pool[:, j], kind="stable")
        values = pool[order, j]
        ends = np.append(values[1:] != values[:-1], True)
        out[:, j] = np.abs(np.cumsum(weights[:, order], axis=1)[:, ends]).max(axis=1)
    return out


class SortedReference:
    """KS distances of windows against one fixed sample, with the sample sorted once.

    Values pass through arctan (monotone, so ECDFs keep their order and ties) into (-pi/2,
    pi/2); column j is then shifted by 4j, so one sorted array holds every column in turn and
    a window needs one sort and three searchsorted calls for all columns together.
    """

    def __init__(self, x: np.ndarray) -> None:
        self.n, self.d = x.shape
        self.offsets = 4.0 * np.arange(self.d)
        self.xs = np.sort((np.arctan(x) + self.offsets).T.ravel())
        # Counts from a searchsorted include every earlier column; take those out.
        self.earlier_x = np.repeat(np.arange(self.d), self.n)
        below = np.searchsorted(self.xs, self.xs, side="right") - self.earlier_x * self.n
        self.cdf_x_at_x = below / self.n

    def distances(self, y: np.ndarray) -> np.ndarray:
        """sup |F_x - F_y| per column; y is m x d with the same columns as x."""
        n, m, d = self.n, len(y), self.d
        ys = np.sort((np.arctan(y) + self.offsets).T.ravel())
        earlier_y = np.repeat(np.arange(d), m)
        cdf_x_at_y = (np.searchsorted(self.xs, ys, side="right") - earlier_y * n) / n
        cdf_y_at_y = (np.searchsorted(ys, ys, side="right") - earlier_y * m) / m
        cdf_y_at_x = (np.searchsorted(ys, self.xs, side="right") - self.earlier_x * m) / m
        gaps_x = np.abs(self.cdf_x_at_x - cdf_y_at_x).reshape(d, n).max(axis=1)
        gaps_y = np.abs(cdf_x_at_y - cdf_y_at_y).reshape(d, m).max(axis=1)
        return np.maximum(gaps_x, gaps_y)


@dataclass(frozen=True)
class KernelReference:
    """What evaluating a window needs, precomputed from a calibrated reference."""

    z_ref: np.ndarray  # standardised reference features
    kxx_mean: float  # the window-independent MMD² term
    bandwidth: float
    mmd_threshold: float
    ks_critical: np.ndarray
    scale: float
    feature_names: tuple[str, ...]
    sorted_ref: SortedReference

    @classmethod
    def build(
        cls,
        z_ref: np.ndarray,
        bandwidth: float,
        mmd_threshold: float,
        ks_critical: np.ndarray,
        scale: float,
        feature_names: tuple[str, ...],
    ) -> KernelReference:
        kxx = offdiag_mean(rbf_kernel(z_ref, z_ref, bandwidth))
        sorted_ref = SortedReference(z_ref)
        return cls(
            z_ref, kxx, bandwidth, mmd_threshold, ks_critical, scale, feature_names, sorted_ref
        )

    def evaluate(self, window: np.ndarray) -> DriftScore:
        """Score a full window of standardised features."""
        kyy = offdiag_mean(rbf_kernel(window, window, self.bandwidth))
        kxy = float(rbf_kernel(self.z_ref, window, self.bandwidth).mean())
        mmd2 = self.kxx_mean + kyy - 2.0 * kxy
        mmd_score = max(mmd2, 0.0) / self.mmd_threshold / self.scale
        ks_scores = self.sorted_ref.distances(window) / self.ks_critical / self.scale
        return DriftScore(
            score=float(max(mmd_score, float(ks_scores.max()))),
            mmd2=float(mmd2),
            mmd_score=float(mmd_score),
            feature_scores=dict(zip(self.feature_names, ks_scores.tolist(), strict=True)),
            window_fill=1.0,
            ready=True,
        )

    def empty(self, fill: float) -> DriftScore:
        """The score of a window that is not full yet: zeros."""
        zeros = dict.fromkeys(self.feature_names, 0.0)
        return DriftScore(0.0, 0.0, 0.0, zeros, fill, False)


def calibrate(
    pool: np.ndarray, n_ref: int, window: int, level: float, trials: int, rng: np.random.Generator
) -> Thresholds:
    """Thresholds for a reference of the first `n_ref` rows of `pool` (standardised features)
    and windows of `window` rows, at false-alarm rate `level` per window.

    The null is simulated by random disjoint (reference, window) splits of the whole pool:
    `trials` splits set the thresholds, `trials` more measure the rate they give.
    """
    d = pool.shape[1]
    bandwidth = median_heuristic(pool[:n_ref])
    ref_mask, win_mask = split_masks(len(pool), n_ref, window, 2 * trials, rng)
    mmd_null = split_mmd2(rbf_kernel(pool, pool, bandwidth), ref_mask, win_mask)
    ks_null = split_ks(pool, ref_mask, win_mask)
    fit, check = slice(0, trials), slice(trials, 2 * trials)
    mmd_threshold = float(np.quantile(mmd_null[fit], 1.0 - level / 2.0))
    ks_critical = np.full(d, ks_critical_value(n_ref, window, level / (2.0 * d)))
    combined = np.maximum(mmd_null / mmd_threshold, (ks_null / ks_critical).max(axis=1))
    scale = float(np.quantile(combined[fit], 1.0 - level))
    measured = float(np.mean(combined[check] > scale))
    return Thresholds(bandwidth, mmd_threshold, ks_critical, scale, measured)


def median_heuristic(z: np.ndarray) -> float:
    """The median pairwise distance: the usual Gaussian-kernel bandwidth."""
    sq = ((z[:, None, :] - z[None, :, :]) ** 2).sum(axis=-1)
    upper = sq[np.triu_indices(len(z), k=1)]
    return float(np.sqrt(max(float(np.median(upper)), 1e-6)))


def ks_critical_value(n: int, m: int, level: float) -> float:
    """The two-sample KS distance exceeded with probability `level` (Kolmogorov limit law)."""
    from scipy import stats  # here: 0.8 s to import, for this one quantile

    return float(stats.kstwobign.isf(level) * np.sqrt((n + m) / (n * m)))
