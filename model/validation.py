"""Check a CycleGAN-layout data set before any training time is spent on it.

`validate_dataset` never raises for bad data: every problem becomes one line naming the file.
Errors make the set unusable (missing folders, too few images, unreadable or truncated files,
tiny images, the same picture in train and test). Warnings are fixed on load or ignored
(non-RGB modes are converted; stray files are skipped).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"})
REQUIRED_FOLDERS = ("trainA", "trainB", "testA", "testB")
GT_FOLDER = "testB_gt"
MIN_SIDE = 16


@dataclass
class ValidationReport:
    """The outcome of `validate_dataset`: `ok` is False exactly when there are errors."""

    path: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """One paragraph for logs and chat."""
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items()) or "no images"
        head = f"Data set {self.path}: " + ("OK" if self.ok else f"{len(self.errors)} error(s)")
        text = f"{head} ({counts}; {len(self.warnings)} warning(s))."
        if self.errors:
            shown = "; ".join(self.errors[:5])
            more = f"; and {len(self.errors) - 5} more" if len(self.errors) > 5 else ""
            text += f" {shown}{more}."
        return text

    def to_markdown(self) -> str:
        lines = [f"## Data validation: {'passed' if self.ok else 'FAILED'}", ""]
        lines += [f"`{self.path}`", "", "| folder | images |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in self.counts.items()]
        for title, items in (("Errors", self.errors), ("Warnings", self.warnings)):
            if items:
                lines += ["", f"### {title} ({len(items)})", ""] + [f"- {i}" for i in items]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "counts": dict(self.counts),
        }


def _check_image(path: Path, rel: str, min_side: int, report: ValidationReport) -> str | None:
    """Decode one file fully; return a hash of its pixels, or None (and a report line)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                if image.mode != "RGB":
                    report.warnings.append(f"{rel}: mode {image.mode}, converted to RGB on load")
                width, height = image.size
                rgb = image.convert("RGB")
    except Exception as exc:  # any decoder failure is a property of the file, not a crash
        # PIL names the full path in some messages; the report names the file already.
        reason = (str(exc).replace(str(path), path.name).splitlines() or [type(exc).__name__])[0]
        report.errors.append(f"{rel}: unreadable or corrupt image ({reason})")
        return None
    if min(width, height) < min_side:
        report.errors.append(f"{rel}: {width}x{height} px is too small (minimum {min_side} px)")
        return None
    return hashlib.sha256(f"{width}x{height}".encode() + rgb.tobytes()).hexdigest()


def _scan_folder(
    root: Path, folder: str, min_side: int, report: ValidationReport
) -> dict[str, str]:
    """Check every entry of one folder; count its usable images in `report.counts`.

    Returns pixel hash -> relative name of the first image with those pixels.
    """
    hashes: dict[str, str] = {}
    for entry in sorted((root / folder).iterdir()):
        rel = f"{folder}/{entry.name}"
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            report.warnings.append(f"{rel}: a sub-folder, ignored")
        elif entry.suffix.lower() not in IMAGE_EXTENSIONS:
            report.warnings.append(f"{rel}: not an image file, ignored")
        elif (digest := _check_image(entry, rel, min_side, report)) is not None:
            if digest in hashes:
                report.warnings.append(f"{rel}: same picture as {hashes[digest]}")
            hashes.setdefault(digest, rel)
            report.counts[folder] = report.counts.get(folder, 0) + 1
    report.counts.setdefault(folder, 0)
    return hashes


def _check_ground_truth(root: Path, report: ValidationReport) -> None:
    if not (root / GT_FOLDER).is_dir() or not (root / "testA").is_dir():
        return
    gt_names = {p.name for p in (root / GT_FOLDER).iterdir()}
    for path in sorted((root / "testA").iterdir()):
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.name not in gt_names:
            report.warnings.append(f"{GT_FOLDER}/: no ground truth for testA/{path.name}")


def validate_dataset(
    path: str | Path, image_size: int = 32, min_images: int = 8
) -> ValidationReport:
    """Check the folder layout and every file; report each problem by file name.

    Train folders need `min_images` usable images, test folders at least one. Images whose
    shorter side is under max(16, image_size / 2) px are errors, as is any picture that
    appears both in a train folder and in a test folder (compared by decoded pixels).
    """
    root = Path(path)
    report = ValidationReport(path=str(root))
    if not root.is_dir():
        report.errors.append(f"{root}: no such data set folder")
        return report
    min_side = max(MIN_SIDE, image_size // 2)
    seen: dict[str, dict[str, str]] = {}
    for folder in (*REQUIRED_FOLDERS, GT_FOLDER):
        if (root / folder).is_dir():
            seen[folder] = _scan_folder(root, folder, min_side, report)
        elif folder != GT_FOLDER:
            report.errors.append(f"{folder}/: missing folder (expected {root / folder})")
    for folder in seen:
        need = min_images if folder.startswith("train") else 1
        if folder != GT_FOLDER and report.counts[folder] < need:
            have = report.counts[folder]
            report.errors.append(f"{folder}/: {have} usable image(s), need at least {need}")
    _check_leaks(seen, report)
    _check_ground_truth(root, report)
    return report


def _check_leaks(seen: dict[str, dict[str, str]], report: ValidationReport) -> None:
    train = {h: rel for f, hs in seen.items() if f.startswith("train") for h, rel in hs.items()}
    for folder, hashes in seen.items():
        if folder.startswith("test"):
            for digest, rel in hashes.items():
                if digest in train:
                    report.errors.append(f"{rel}: duplicate of {train[digest]} (train/test leak)")
