"""The drift retrain's data: the champion's data plus the episode's captured inputs as domain A."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from ganops.model.data import list_images
from ganops.model.serving.capture import CaptureConfig, CaptureSink
from ganops.model.validation import validate_dataset
from ganops.pipeline.captured import CapturedSpec, dump_specs, held_out_count, load_specs
from ganops.pipeline.params import validate_params
from ganops.pipeline.ports import InvalidParamsError, RunParams
from ganops.pipeline.steps.data import IngestError, ingest
from ganops.pipeline.steps.fetchguard import DataRules

# An approver's run: no prefix to stay under (the address and symlink rules still hold).
OPEN = DataRules(anywhere=True)

T0 = 1_700_000_000.0


def _capture(store: Path, version: str, n: int, at: float) -> None:
    """n bright, flat 32-px inputs served by `version` at time `at`."""
    sink = CaptureSink(
        CaptureConfig(rate=1.0, uri=str(store), days=36500),
        model="cut",
        version=version,
        clock=lambda: at,
    )
    rng = np.random.default_rng(int(at) % 1000)
    sink.offer(0.7 + 0.3 * rng.random((n, 32, 32, 3), dtype=np.float32))
    sink.close()


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in list_images(folder)}


def _ingest(out: Path, captured: str = "") -> str:
    return ingest(
        source="synthetic",
        out_dir=str(out),
        image_size=32,
        seed=0,
        synthetic_n=40,
        events_dir="",
        rules=OPEN,
        captured=captured,
    )


def test_the_drift_retrain_data_holds_the_captured_inputs_and_the_same_b_domain(
    tmp_path: Path,
) -> None:
    store = tmp_path / "captured"
    _capture(store, "3", 60, T0 + 100)  # the episode
    _capture(store, "3", 5, T0 - 100)  # before it: not drift
    _capture(store, "2", 7, T0 + 100)  # another version
    spec = CapturedSpec(str(store), "cut", "3", since=T0, until=T0 + 200)
    champion, retrain = tmp_path / "champion", tmp_path / "retrain"
    champion_digest = _ingest(champion)
    assert _ingest(retrain, dump_specs([spec])) != champion_digest

    for folder in ("trainB", "testB"):
        assert _digests(retrain / folder) == _digests(champion / folder)
    held = held_out_count(60)
    assert held == 15
    assert len(list_images(retrain / "testA")) == held
    assert not (retrain / "testB_gt").exists()
    assert len(list_images(retrain / "capturedA")) == 60 - held
    captured_names = {p.name for p in list_images(retrain / "capturedA")}
    held_names = {p.name for p in list_images(retrain / "testA")}
    assert not captured_names & held_names
    # The champion's A domain stays; the captured inputs are repeated to half of trainA.
    train_a = _digests(retrain / "trainA")
    assert set(_digests(champion / "trainA").items()) <= set(train_a.items())
    from_capture = [n for n in train_a if n.startswith("captured")]
    assert len(from_capture) == 45  # 45 inputs, once: 40 original images need no repeat
    assert {n.split("_", 1)[1] for n in from_capture} == captured_names
    assert validate_dataset(retrain, image_size=32).ok


def test_too_few_captured_inputs_fail_ingest_in_one_line(tmp_path: Path) -> None:
    _capture(tmp_path / "c", "3", 5, T0 + 1)
    spec = CapturedSpec(str(tmp_path / "c"), "cut", "3", since=T0, until=T0 + 10)
    with pytest.raises(IngestError, match="only 5 captured inputs"):
        _ingest(tmp_path / "out", dump_specs([spec]))


def test_captured_specs_round_trip_and_bad_ones_are_refused() -> None:
    spec = CapturedSpec("s3://b/c", "cut", "3", since=T0, until=T0 + 5)
    assert load_specs(dump_specs([spec])) == [spec]
    assert validate_params(RunParams(captured=dump_specs([spec]))).captured
    with pytest.raises(InvalidParamsError, match="captured"):
        validate_params(RunParams(captured="[{}]"))


def test_a_chained_retrain_keeps_earlier_inputs_but_fits_on_this_episode(tmp_path: Path) -> None:
    store = tmp_path / "captured"
    _capture(store, "3", 30, T0 + 100)  # the episode that made v4
    _capture(store, "4", 40, T0 + 900)  # this one, on v4
    earlier = CapturedSpec(str(store), "cut", "3", since=T0, until=T0 + 200)
    latest = CapturedSpec(str(store), "cut", "4", since=T0 + 800, until=T0 + 1000)
    _ingest(tmp_path / "out", dump_specs([earlier, latest]))
    held = held_out_count(40)
    names = {p.name for p in list_images(tmp_path / "out" / "capturedA")}
    assert len(names) == 40 - held
    assert all(n.startswith("4_") for n in names)
    train_a = [p.name for p in list_images(tmp_path / "out" / "trainA")]
    assert sum(n.startswith("captured0_3_") for n in train_a) == 30
    assert sum(n.startswith("captured0_4_") for n in train_a) == 40 - held
