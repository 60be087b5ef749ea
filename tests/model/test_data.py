from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganops.model.data import (
    DriftKnobs,
    UnpairedImageDataset,
    apply_knobs,
    dataset_digest,
    list_images,
    load_image,
    load_test_set,
    make_synthetic,
)
from ganops.model.synthetic import from_pil

FOLDERS = ("trainA", "trainB", "testA", "testB", "testB_gt")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("syn") / "data", n_train=24, n_test=12)


def _mean_image(folder: Path) -> np.ndarray:
    return np.stack([from_pil(Image.open(p)) for p in list_images(folder)])


def test_synthetic_layout_and_ground_truth_names(synthetic: Path) -> None:
    counts = {f: len(list_images(synthetic / f)) for f in FOLDERS}
    assert counts == {"trainA": 24, "trainB": 24, "testA": 12, "testB": 12, "testB_gt": 12}
    names_a = [p.name for p in list_images(synthetic / "testA")]
    assert names_a == [p.name for p in list_images(synthetic / "testB_gt")]
    with Image.open(synthetic / "testA" / names_a[0]) as image:
        assert (image.size, image.mode) == ((32, 32), "RGB")


def test_synthetic_is_deterministic_per_seed(tmp_path: Path) -> None:
    first = make_synthetic(tmp_path / "a", n_train=6, n_test=4, seed=3)
    again = make_synthetic(tmp_path / "b", n_train=6, n_test=4, seed=3)
    other = make_synthetic(tmp_path / "c", n_train=6, n_test=4, seed=4)
    assert dataset_digest(first) == dataset_digest(again)
    assert dataset_digest(first) != dataset_digest(other)


def test_ground_truth_is_the_b_style_of_the_same_scene(synthetic: Path) -> None:
    a, gt = _mean_image(synthetic / "testA"), _mean_image(synthetic / "testB_gt")
    b = _mean_image(synthetic / "testB")
    # The B style is warm: red over blue, in the ground truth as in real B images.
    warmth = lambda x: float((x[..., 0] - x[..., 2]).mean())  # noqa: E731
    assert warmth(gt) > warmth(a) + 0.2
    assert abs(warmth(gt) - warmth(b)) < 0.1
    # Paired: each ground truth covers its own input's shapes, not another input's.
    own = [_iou(_shapes(a[i]), _shapes(gt[i])) for i in range(len(a))]
    other = [_iou(_shapes(a[i]), _shapes(gt[i - 1])) for i in range(len(a))]
    assert np.mean(own) > 0.6
    assert np.mean(own) > np.mean(other) + 0.3


def _shapes(image: np.ndarray) -> np.ndarray:
    """Pixels that differ from the background (the corner colour)."""
    return np.abs(image - image[0, 0]).sum(-1) > 0.15


def _iou(x: np.ndarray, y: np.ndarray) -> float:
    return float((x & y).sum() / max((x | y).sum(), 1))


def test_knobs_move_statistics_the_right_way() -> None:
    rng = np.random.default_rng(0)
    image = np.full((32, 32, 3), 0.5, dtype=np.float32)
    image[8:24, 8:24] = [0.9, 0.2, 0.2]
    assert np.array_equal(apply_knobs(image, DriftKnobs(), rng), image)
    brighter = apply_knobs(image, DriftKnobs(brightness=0.1), rng)
    assert brighter.mean() == pytest.approx(image.mean() + 0.1, abs=0.01)
    flatter = apply_knobs(image, DriftKnobs(contrast=0.5), rng)
    assert flatter.std(axis=(0, 1)) == pytest.approx(image.std(axis=(0, 1)) * 0.5, rel=0.05)
    noisy = apply_knobs(image, DriftKnobs(noise=0.05), rng)
    assert (noisy - image).std() == pytest.approx(0.05, rel=0.2)
    zoomed = apply_knobs(image, DriftKnobs(scale=1.5), rng)
    red = lambda x: int((x[..., 0] > 0.8).sum())  # noqa: E731
    assert red(zoomed) > 1.8 * red(image)
    assert red(apply_knobs(image, DriftKnobs(scale=0.5), rng)) < 0.4 * red(image)
    turned = apply_knobs(image, DriftKnobs(hue=0.5), rng)
    assert turned[16, 16, 2] > turned[16, 16, 0]  # red turned towards cyan
    luma = np.array([0.299, 0.587, 0.114])
    assert float(turned[16, 16] @ luma) == pytest.approx(float(image[16, 16] @ luma), abs=0.03)


def test_synthetic_knobs_shift_inputs_only(tmp_path: Path, synthetic: Path) -> None:
    drifted = make_synthetic(
        tmp_path / "d", n_train=24, n_test=12, knobs=DriftKnobs(brightness=0.1)
    )
    assert _mean_image(drifted / "testA").mean() > _mean_image(synthetic / "testA").mean() + 0.05
    assert dataset_digest(drifted / "testB_gt") == dataset_digest(synthetic / "testB_gt")


def test_unpaired_dataset_items(synthetic: Path) -> None:
    dataset = UnpairedImageDataset(synthetic, split="train", image_size=32)
    assert len(dataset) == 24
    torch.manual_seed(0)
    first = [dataset[i]["B_path"] for i in range(8)]
    torch.manual_seed(0)
    assert [dataset[i]["B_path"] for i in range(8)] == first
    assert len(set(first)) > 1  # B is drawn at random, not aligned with A
    item = dataset[0]
    assert item["A"].shape == item["B"].shape == (3, 32, 32)
    assert item["A"].min() >= -1.0
    assert item["A"].max() <= 1.0
    assert item["A_path"].endswith("train_00000.png")
    with pytest.raises(ValueError, match="no images"):
        UnpairedImageDataset(synthetic, split="val")


def test_load_image_converts_and_resizes(tmp_path: Path, synthetic: Path) -> None:
    Image.new("L", (40, 20), 200).save(tmp_path / "grey.png")
    tensor = load_image(tmp_path / "grey.png", 32)
    assert tensor.shape == (3, 32, 32)
    assert float(tensor.mean()) == pytest.approx(200 / 127.5 - 1, abs=0.01)
    test = load_test_set(synthetic, 32, limit=5)
    assert test.a.shape == test.b.shape == (5, 3, 32, 32)
    assert test.gt is not None
    assert test.gt.shape == (5, 3, 32, 32)


def test_digest_tracks_names_and_bytes_and_ignores_hidden_files(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "d", n_train=4, n_test=2)
    digest = dataset_digest(root)
    assert digest.startswith("sha256:")
    assert len(digest) == 7 + 64
    assert dataset_digest(root) == digest
    (root / ".DS_Store").write_bytes(b"junk")
    (root / "trainA" / ".hidden.png").write_bytes(b"junk")
    assert dataset_digest(root) == digest
    target = list_images(root / "trainB")[0]
    data = bytearray(target.read_bytes())
    data[-5] ^= 1
    target.write_bytes(bytes(data))
    assert dataset_digest(root) != digest
    data[-5] ^= 1
    target.write_bytes(bytes(data))
    assert dataset_digest(root) == digest
    os.rename(target, target.with_name("renamed.png"))
    assert dataset_digest(root) != digest
