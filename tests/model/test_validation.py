from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganops.model.data import list_images, make_synthetic, validate_dataset


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A synthetic set with one of every problem the validator knows."""
    root = make_synthetic(tmp_path / "data", n_train=12, n_test=4)
    good = list_images(root / "trainA")[0].read_bytes()
    (root / "trainA" / "truncated.png").write_bytes(good[: len(good) // 2])
    rng = np.random.default_rng(0)
    (root / "trainA" / "random.jpg").write_bytes(rng.integers(0, 256, 2000, np.uint8).tobytes())
    (root / "trainA" / "empty.png").write_bytes(b"")
    Image.new("L", (32, 32), 90).save(root / "trainA" / "grey.png")
    Image.new("RGBA", (32, 32), (10, 20, 30, 128)).save(root / "trainA" / "alpha.png")
    Image.new("RGB", (32, 32), (1, 2, 3)).convert("P").save(root / "trainA" / "palette.png")
    Image.new("RGB", (4, 4), (200, 0, 0)).save(root / "trainA" / "tiny.png")
    (root / "trainA" / "notes.txt").write_text("not an image")
    shutil.copy(list_images(root / "trainB")[0], root / "testB" / "leak.png")
    for extra in list_images(root / "trainB")[2:]:
        extra.unlink()
    shutil.rmtree(root / "testA")
    return root


def test_a_clean_synthetic_set_passes(tmp_path: Path) -> None:
    report = validate_dataset(make_synthetic(tmp_path / "ok", n_train=10, n_test=3))
    assert report.ok, report.errors
    assert report.warnings == []
    assert report.counts == {"trainA": 10, "trainB": 10, "testA": 3, "testB": 3, "testB_gt": 3}
    assert "OK" in report.summary()


def test_every_problem_is_reported_by_file_name(broken: Path) -> None:
    report = validate_dataset(broken, image_size=32, min_images=8)
    assert not report.ok
    errors = "\n".join(report.errors)
    for name in ("trainA/truncated.png", "trainA/random.jpg", "trainA/empty.png"):
        assert f"{name}: unreadable or corrupt image" in errors
    assert "trainA/tiny.png: 4x4 px is too small" in errors
    assert "testB/leak.png: duplicate of trainB/" in errors
    assert "trainB/: 2 usable image(s), need at least 8" in errors
    assert "testA/: missing folder" in errors
    warnings = "\n".join(report.warnings)
    assert "trainA/grey.png: mode L, converted" in warnings
    assert "trainA/alpha.png: mode RGBA, converted" in warnings
    assert "trainA/palette.png: mode P, converted" in warnings
    assert "trainA/notes.txt: not an image file" in warnings
    assert "tiny.png" not in warnings
    assert "grey.png" not in errors
    # Modes are converted, so those images count as usable.
    assert report.counts["trainA"] == 12 + 3
    # Every line is one line: no tracebacks leak into the report.
    assert all("\n" not in line for line in report.errors + report.warnings)


def test_report_renders_for_humans(broken: Path) -> None:
    report = validate_dataset(broken)
    summary = report.summary()
    assert "\n" not in summary
    assert "error(s)" in summary
    assert "trainA/empty.png" in summary or "more" in summary
    markdown = report.to_markdown()
    assert markdown.startswith("## Data validation: FAILED")
    assert all(f"- {e}" in markdown for e in report.errors)
    assert report.to_dict()["ok"] is False


def test_missing_root_and_image_size_threshold(tmp_path: Path) -> None:
    report = validate_dataset(tmp_path / "nowhere")
    assert not report.ok
    assert "no such data set folder" in report.errors[0]
    root = make_synthetic(tmp_path / "small", n_train=8, n_test=2, image_size=32)
    # 32 px images are fine for 32 px training, too small (under half) for 256 px training.
    assert validate_dataset(root, image_size=32).ok
    big = validate_dataset(root, image_size=256)
    assert not big.ok
    assert any("32x32 px is too small (minimum 128 px)" in e for e in big.errors)


def test_missing_ground_truth_is_a_warning(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "gt", n_train=8, n_test=3)
    missing = list_images(root / "testB_gt")[0]
    missing.unlink()
    report = validate_dataset(root)
    assert report.ok
    assert f"testB_gt/: no ground truth for testA/{missing.name}" in report.warnings
