"""Input drift: a reference profile fitted at training time and an online two-sample test.

Every input image becomes a vector of summary statistics (`model.features`). The reference
holds those vectors for the training inputs. The server keeps a sliding window of the last
`window` request vectors and compares it with the reference by two tests:

- a kernel two-sample test: the unbiased MMD² with a Gaussian kernel on features standardised
  by the reference, bandwidth by the median heuristic;
- one Kolmogorov-Smirnov test per feature.

The false-alarm budget is split Bonferroni-style: half to the MMD, half to the KS family,
shared equally by the features. Each part becomes a ratio "statistic / its threshold"; the
drift statistic is the largest ratio, divided by its own calibrated null quantile, so that
`score > 1` means drift.

Calibration simulates drift-free windows as random disjoint (reference, window) splits of the
training features: a permutation null. That null averages over the draw of the reference; the
one reference we keep has its own sampling error, and its false-alarm rate scatters around
the average (bench/drift.py, 10 references of 200 images, 64-image windows: calibrated at
0.25% per window they ranged up to 2.1%; at 0.1% up to 0.5%, with the same detection delays).
So the thresholds are set at `target_fpr * safety` (default a tenth), which keeps a deployed
reference under `target_fpr`; the rates measured on independent simulated windows, and on
held-out images when there are enough, are reported in `DriftReference.calibration`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ganops.model.drift_stats import DriftScore, KernelReference, calibrate
from ganops.model.features import FEATURE_NAMES, image_features
from ganops.model.serving.capture import CAPTURED_DIR

__all__ = [
    "CAPTURED_DIR",
    "DriftReference",
    "DriftScore",
    "attach_reference",
    "fit_reference",
    "load_images",
]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class DriftReference:
    """The reference profile and its calibrated thresholds (JSON-able via to_dict)."""

    window: int
    reference: np.ndarray  # R x d raw features: what the online window is compared with
    held_out: np.ndarray  # H x d raw features, used only for calibration
    mean: np.ndarray  # d: standardisation
    std: np.ndarray
    bandwidth: float  # Gaussian kernel sigma on standardised features
    mmd_threshold: float
    ks_critical: np.ndarray  # d
    scale: float
    target_fpr: float
    calibration: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key, value in data.items():
            if isinstance(value, np.ndarray):
                data[key] = value.round(7).tolist()
        data["feature_names"] = list(self.feature_names)
        return {"format": FORMAT_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReference:
        """Rebuild a reference from `to_dict()` output.

        Raises:
            ValueError: an unknown format, or features this code does not compute.
        """
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"unsupported drift reference format {data.get('format')!r}")
        names = tuple(data["feature_names"])
        if names != FEATURE_NAMES:
            raise ValueError(f"drift reference features {names} differ from {FEATURE_NAMES}")
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        for key in ("reference", "held_out"):
            values[key] = np.asarray(values[key], dtype=np.float64).reshape(-1, len(names))
        for key in ("mean", "std", "ks_critical"):
            values[key] = np.asarray(values[key], dtype=np.float64)
        values["feature_names"] = names
        return cls(**values)

    def standardise(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, dtype=np.float64) - self.mean) / self.std

    def kernel(self) -> KernelReference:
        """The precomputed evaluator of windows against this reference."""
        return KernelReference.build(
            self.standardise(self.reference),
            self.bandwidth,
            self.mmd_threshold,
            self.ks_critical,
            self.scale,
            self.feature_names,
        )

    def with_window(self, window: int) -> DriftReference:
        """The same profile recalibrated for another window size (thresholds depend on it)."""
        if window == self.window:
            return self
        cal = self.calibration
        return _fit(
            self.reference,
            self.held_out,
            window,
            self.target_fpr,
            float(cal.get("safety", 0.1)),
            int(cal.get("trials", 5000)),
            int(cal.get("seed", 0)),
            self.image_size,
        )


def fit_reference(
    source: np.ndarray | str | Path,
    window: int = 64,
    seed: int = 0,
    held_out_fraction: float = 0.3,
    target_fpr: float = 0.01,
    safety: float = 0.1,
    trials: int = 5000,
    image_size: int | None = None,
    max_images: int = 400,
) -> DriftReference:
    """Fit a drift reference on training inputs and calibrate it.

    Args:
        source: NxHxWx3 float images in [0, 1], or a data folder (its `trainA/` when present,
            else the images directly in it).
        window: the online window size the thresholds are calibrated for.
        seed: seeds the reference/held-out split and the simulated windows.
        held_out_fraction: share of images kept out of the reference (at least `window`).
        target_fpr: the false-alarm rate per evaluated window to stay under.
        safety: calibrate at `target_fpr * safety`, for the reference's own sampling error.
        trials: simulated drift-free windows per calibration pass.
        image_size: folder images are resized to this side (None: the first image's size).
        max_images: a random subset of at most this many images is used; calibration time
            grows with its square (~0.6 s for 200 images on one core, ~2 s for 400).

    Raises:
        ValueError: fewer than 2 * window + 8 images, or arguments out of range.
    """
    if isinstance(source, str | Path):
        images = load_images(Path(source), image_size)
    else:
        images = np.asarray(source, dtype=np.float32)
    bad = not (0.0 < target_fpr < 0.5 and 0.0 < safety <= 1.0 and 0.0 < held_out_fraction < 1.0)
    if bad or window < 8 or trials < 100:
        raise ValueError(
            "need 0 < target_fpr < 0.5, 0 < safety <= 1, 0 < held_out_fraction < 1, "
            "window >= 8 and trials >= 100"
        )
    if len(images) < 2 * window + 8:
        raise ValueError(
            f"need at least {2 * window + 8} images for window={window}, got {len(images)}"
        )
    order = np.random.default_rng(seed).permutation(len(images))[:max_images]
    features = image_features(images[np.sort(order)])[np.argsort(np.argsort(order))]
    n = len(order)
    order = np.arange(n)
    n_held = min(n - window - 8, max(window, round(held_out_fraction * n)))
    reference, held_out = features[order[n_held:]], features[order[:n_held]]
    size = image_size if image_size is not None else int(images.shape[1])
    return _fit(reference, held_out, window, target_fpr, safety, trials, seed, size)


def attach_reference(
    bundle_dir: str | Path, data_dir: str | Path, *, seed: int, image_size: int
) -> str:
    """Fit the reference on the inputs a bundle trained on and save it in the bundle: the one
    path used by `ganops train`, the pipeline's train step and the drift retrain. Small data
    sets get a smaller window; one too small for any window serves without drift scoring.

    Returns:
        one line for the log saying what was fitted, or why nothing was.
    """
    import json

    from ganops.model.bundle import DRIFT_REFERENCE
    from ganops.model.data import list_images

    data = Path(data_dir)
    source = data / CAPTURED_DIR if (data / CAPTURED_DIR).is_dir() else data
    root = source / "trainA" if (source / "trainA").is_dir() else source
    n = len(list_images(root))
    window = min(64, (n - 8) // 2)
    if window < 8:
        return f"drift: {n} training images are too few for a drift reference"
    reference = fit_reference(source, window=window, seed=seed, image_size=image_size)
    (Path(bundle_dir) / DRIFT_REFERENCE).write_text(json.dumps(reference.to_dict()))
    return f"drift: reference fitted on {n} images of {root.name} (window {window})"


def load_images(folder: Path, image_size: int | None) -> np.ndarray:
    """A folder's images (its trainA/ when present) as NxHxWx3 float32 in [0, 1]."""
    from PIL import Image

    from ganops.model.data import list_images

    root = folder / "trainA" if (folder / "trainA").is_dir() else folder
    paths = list_images(root)
    if not paths:
        raise ValueError(f"no images in {root}")
    arrays = []
    for path in paths:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        side = image_size or rgb.size[0]
        if rgb.size != (side, side):
            rgb = rgb.resize((side, side), Image.Resampling.BICUBIC)
        image_size = side
        arrays.append(np.asarray(rgb, dtype=np.float32) / 255.0)
    return np.stack(arrays)


def _fit(
    reference: np.ndarray,
    held_out: np.ndarray,
    window: int,
    target_fpr: float,
    safety: float,
    trials: int,
    seed: int,
    image_size: int | None,
) -> DriftReference:
    mean = reference.mean(axis=0)
    # The floor keeps a (near) constant feature from turning rounding noise into drift.
    std = np.maximum(reference.std(axis=0), 1e-3)
    pool = (np.concatenate([reference, held_out]) - mean) / std
    level = target_fpr * safety
    rng = np.random.default_rng([seed, 7])
    found = calibrate(pool, len(reference), window, level, trials, rng)
    profile = DriftReference(
        window=window,
        reference=reference,
        held_out=held_out,
        mean=mean,
        std=std,
        bandwidth=found.bandwidth,
        mmd_threshold=found.mmd_threshold,
        ks_critical=found.ks_critical,
        scale=found.scale,
        target_fpr=target_fpr,
        image_size=image_size,
    )
    calibration = {
        "method": "permutation: random disjoint reference/window splits of training features",
        "trials": trials,
        "seed": seed,
        "safety": safety,
        "design_fpr": level,
        "mmd_level": level / 2.0,
        "ks_level_per_feature": level / (2.0 * len(mean)),
        "n_reference": len(reference),
        "n_held_out": len(held_out),
        "measured_fpr": found.measured_fpr,
        "held_out_fpr": _held_out_fpr(profile, rng, trials),
    }
    return dataclasses.replace(profile, calibration=calibration)


def _held_out_fpr(profile: DriftReference, rng: np.random.Generator, trials: int) -> float | None:
    """False alarms of the kept reference on windows of held-out images (None: too few)."""
    if len(profile.held_out) < 2 * profile.window:
        return None
    evaluator = profile.kernel()
    z = profile.standardise(profile.held_out)
    hits = sum(
        evaluator.evaluate(z[rng.choice(len(z), profile.window, replace=False)]).score > 1.0
        for _ in range(min(trials, 1000))
    )
    return hits / min(trials, 1000)
