"""The background checkpoint writer and the durable-storage functions (local URLs)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from ganops.model import storage
from ganops.model.checkpoint import CheckpointError, load_checkpoint
from ganops.model.checkpoint_writer import CheckpointWriter, cpu_copy


def test_cpu_copy_is_independent_of_the_training_tensors() -> None:
    weights = torch.ones(3)
    state = {"nets": {"G": weights}, "history": [(1, {"g": 0.5})], "rng": (weights,)}
    copy = cpu_copy(state)
    weights.add_(1)  # training goes on mutating its own tensors in place
    assert torch.equal(copy["nets"]["G"], torch.ones(3))
    assert torch.equal(copy["rng"][0], torch.ones(3))
    assert copy["history"] == [(1, {"g": 0.5})]


def test_the_newest_waiting_checkpoint_wins_and_flush_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = CheckpointWriter(tmp_path / "last.pt", str(tmp_path / "durable" / "last.pt"))
    release, started = threading.Event(), threading.Event()
    written: list[int] = []
    real_write = writer._write

    def slow_write(payload: dict[str, Any]) -> None:
        started.set()
        release.wait(10)
        real_write(payload)
        written.append(payload["step"])

    monkeypatch.setattr(writer, "_write", slow_write)
    writer.submit({"step": 1})
    assert started.wait(10)  # step 1 is being written: the loop did not wait for it
    writer.submit({"step": 2})
    writer.submit({"step": 3})  # replaces 2, which never started
    release.set()
    writer.close()
    assert written == [1, 3]
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 3
    assert load_checkpoint(tmp_path / "durable" / "last.pt")["step"] == 3
    assert not list((tmp_path / "durable").glob("*.tmp"))


def test_a_failed_write_is_reported_to_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = CheckpointWriter(tmp_path / "last.pt")

    def broken(payload: dict[str, Any]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(writer, "_write", broken)
    writer.submit({"step": 1})
    with pytest.raises(CheckpointError, match="disk full"):
        writer.flush()
    with pytest.raises(CheckpointError):
        writer.submit({"step": 2})
    with pytest.raises(CheckpointError):
        writer.close()


def test_storage_round_trip_on_a_local_url(tmp_path: Path) -> None:
    base = storage.join(str(tmp_path / "store"), "req/../1 x")
    assert base == f"{tmp_path}/store/req_.._1_x"
    url = f"{base}/checkpoints/last.pt"
    assert not storage.exists(url)
    assert storage.download(url, tmp_path / "got.pt") is False
    assert storage.read_text(f"{base}/run.json") is None
    src = tmp_path / "src.bin"
    src.write_bytes(b"weights")
    storage.upload(src, url)
    assert storage.exists(url)
    assert storage.download(url, tmp_path / "fresh" / "got.pt")
    assert (tmp_path / "fresh" / "got.pt").read_bytes() == b"weights"
    storage.write_text(f"{base}/run.json", '{"run_id": "r1"}', scratch=tmp_path / "s.json")
    assert storage.read_text(f"{base}/run.json") == '{"run_id": "r1"}'
