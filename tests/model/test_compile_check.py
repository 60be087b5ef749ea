"""torch.compile runs where a compiler is, and training falls back to eager where none is."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
import torch

from ganops.model.compile_check import compile_blocker, find_compiler
from ganops.model.config import TrainConfig, preset
from ganops.model.data import make_synthetic
from ganops.model.registry import TRAIN_NOTE_TAG
from ganops.model.tracking import RecordingTracker
from ganops.model.train import TrainSession

NET = preset(
    "tiny", "cut", ngf=4, ndf=4, n_blocks=1, n_layers_d=2, num_patches=8, netf_nc=8,
    nce_layers=(0, 4, 7, 10),
)  # fmt: skip
COMPILED = TrainConfig(
    net=NET, steps=2, batch_size=2, log_every=1, amp=False, threads=1, compile=True
)


def _exe(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_compiler_is_found_as_inductor_and_triton_look_for_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_compiler("cuda", {"PATH": str(empty)}) is None
    assert find_compiler("cpu", {"PATH": str(empty)}) is None
    gcc, gxx = _exe(tmp_path, "gcc"), _exe(tmp_path, "g++")
    assert find_compiler("cuda", {"PATH": str(tmp_path)}) == str(gcc)
    assert find_compiler("cpu", {"PATH": str(tmp_path)}) == str(gxx)
    # CC / CXX name the compiler inductor will use: a missing one blocks, even with gcc there.
    named = {"PATH": str(tmp_path), "CC": "clang-99"}
    assert find_compiler("cuda", named) is None
    note = compile_blocker("cuda", named)
    assert note is not None
    assert "CC=clang-99 is not on PATH" in note
    assert "none on PATH and CXX unset" in (compile_blocker("cpu", {"PATH": str(empty)}) or "")
    assert compile_blocker("cpu", {"PATH": str(tmp_path)}) is None


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("data"), n_train=8, n_test=4, image_size=32)


def _compiled(session: TrainSession) -> bool:
    return all(
        isinstance(net, torch._dynamo.eval_frame.OptimizedModule)
        for net in session.trainer.nets.values()
    )


@pytest.mark.slow  # inductor compiles C++ for G, D and F: 270 s measured on a busy shared 2-core box
def test_a_compiled_cut_step_trains_on_cpu_with_the_system_compiler(
    data: Path, tmp_path: Path
) -> None:
    if find_compiler("cpu") is None:
        pytest.fail("this test needs g++ (as the trainer image has): none found on PATH")
    torch._dynamo.reset()
    tracker = RecordingTracker()
    session = TrainSession(COMPILED, data, torch.device("cpu"), tracker, tmp_path / "out")
    assert _compiled(session)
    assert session.notes == []
    result = session.run(resume=False)
    assert result.steps == 2
    assert result.notes == []
    assert all(torch.isfinite(torch.tensor(v)) for v in result.final_losses.values())
    assert TRAIN_NOTE_TAG not in tracker.tags


def test_without_a_compiler_training_is_eager_and_says_so(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))
    for var in ("CC", "CXX"):
        monkeypatch.delenv(var, raising=False)
    assert find_compiler("cpu") is None
    assert os.environ["PATH"] == str(bare)
    tracker = RecordingTracker()
    with caplog.at_level(logging.WARNING, logger="ganops.model.compile_check"):
        session = TrainSession(COMPILED, data, torch.device("cpu"), tracker, tmp_path / "out")
        result = session.run(resume=False)
    assert not any(
        isinstance(net, torch._dynamo.eval_frame.OptimizedModule)
        for net in session.trainer.nets.values()
    )
    assert result.steps == 2
    (note,) = result.notes
    assert note.startswith("torch.compile is off: inductor needs a C++ compiler")
    assert any(note in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert tracker.tags[TRAIN_NOTE_TAG] == note
