"""Decoding a domain on several threads gives the tensor one thread gives, in folder order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ganops.model.batches import TrainError, load_domain
from ganops.model.data import make_synthetic


def test_threads_decode_the_same_tensor_in_the_same_order(tmp_path: Path) -> None:
    data = make_synthetic(tmp_path, n_train=24, n_test=2, image_size=32)
    one = load_domain(data / "trainA", 36, workers=1)
    four = load_domain(data / "trainA", 36, workers=4)
    assert one.dtype == torch.uint8
    assert one.shape == (24, 3, 36, 36)
    assert torch.equal(one, four)
    assert torch.equal(load_domain(data / "trainA", 36), one)  # the default count


def test_a_broken_image_is_a_clear_error_from_any_thread(tmp_path: Path) -> None:
    data = make_synthetic(tmp_path, n_train=8, n_test=2, image_size=32)
    broken = sorted((data / "trainB").iterdir())[5]
    broken.write_bytes(b"not an image")
    with pytest.raises(TrainError, match=r"cannot read .*trainB.*ganops validate"):
        load_domain(data / "trainB", 32, workers=4)
