"""GANOPS_DEVICE_DATA_GB from the bot's settings to the trainer: the local launcher's worker
command line, the worker's run storage, the train component and the budget `train` gets.

Fast: the worker's pipeline run and the trainer itself are replaced by recorders, so what is
checked is the hand-over at each boundary, with the real argv, parser and component body."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ganops.pipeline.launch import local, worker
from ganops.pipeline.launch.local import LocalLauncher
from ganops.pipeline.params import RunStorage, pipeline_arguments
from ganops.pipeline.ports import RunParams


def _worker_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options: Any) -> RunStorage:
    """Launch through LocalLauncher; run the argv it spawns in this process; the storage the
    worker hands its pipeline."""
    spawned: list[list[str]] = []

    def spawn(argv: list[str], log: Path, cwd: Path, env: dict[str, str]) -> int:
        spawned.append(list(argv))
        return os.getpid()  # alive, so the run is not marked dead

    monkeypatch.setattr(local.procs, "spawn", spawn)
    state = tmp_path / "state"
    launcher = LocalLauncher(state, "", "img:1", **options)
    launcher.launch(RunParams(data="synthetic"), "req-1")
    [argv] = spawned
    assert argv[1:3] == ["-m", "ganops.pipeline.launch.worker"]
    seen: list[RunStorage] = []

    def run_pipeline(*args: Any, storage: RunStorage, **kwargs: Any) -> None:
        seen.append(storage)

    monkeypatch.setattr(worker, "run_pipeline", run_pipeline)
    assert worker.main(argv[3:]) == 0
    [storage] = seen
    return storage


def test_the_local_launcher_hands_the_budget_to_its_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = _worker_storage(tmp_path, monkeypatch, device_data_gb=0.5, checkpoint_minutes=3.0)
    assert (storage.device_data_gb, storage.checkpoint_minutes) == (0.5, 3.0)
    assert pipeline_arguments(RunParams(), "", storage=storage)["device_data_gb"] == 0.5


def test_unset_the_worker_leaves_it_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = _worker_storage(tmp_path, monkeypatch)
    assert storage.device_data_gb is None
    assert pipeline_arguments(RunParams(), "", storage=storage)["device_data_gb"] == -1.0


class _Stop(Exception):
    pass


def _budget_trained_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gb: float) -> float:
    """Run the train component's body with pipeline parameter `device_data_gb=gb`; the budget
    `model.train.train` is called with (the trainer is stopped there)."""
    import ganops.model.train as model_train
    from ganops.pipeline import components
    from ganops.pipeline.steps import fastexit

    got: list[float] = []

    def train(*args: Any, device_data_gb: float, **kwargs: Any) -> None:
        got.append(device_data_gb)
        raise _Stop

    monkeypatch.setattr(model_train, "train", train)
    # The component would make this test process exit 0 whatever happens (a step's speed-up).
    monkeypatch.setattr(fastexit, "exit_fast_when_done", lambda: None)
    args = pipeline_arguments(RunParams(), "", storage=RunStorage(device_data_gb=None))
    args["device_data_gb"] = gb
    with pytest.raises(_Stop):
        components.train(
            dataset=SimpleNamespace(path=str(tmp_path / "data")),
            data_digest="sha256:d",
            model_name=args["model"],
            job_id="job-1",
            image="img:1",
            model=SimpleNamespace(path=str(tmp_path / "model")),
            loss_curve=SimpleNamespace(path=str(tmp_path / "curve")),
            **{k: v for k, v in args.items() if k not in ("model", "data_allow", "data_anywhere")},
        )
    [budget] = got
    return budget


def test_the_train_step_prefers_the_parameter_to_the_pods_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANOPS_DEVICE_DATA_GB", "not read")  # would fail the step if read
    assert _budget_trained_with(tmp_path, monkeypatch, 0.0) == 0.0  # 0: always stream
    assert _budget_trained_with(tmp_path, monkeypatch, 2.5) == 2.5


def test_unset_the_train_step_reads_the_pods_env_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANOPS_DEVICE_DATA_GB", "3")
    assert _budget_trained_with(tmp_path, monkeypatch, -1.0) == 3.0
    monkeypatch.delenv("GANOPS_DEVICE_DATA_GB")
    assert _budget_trained_with(tmp_path, monkeypatch, -1.0) == 8.0
