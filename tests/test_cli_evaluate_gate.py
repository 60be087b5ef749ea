"""`ganops evaluate --gate`: the pipeline's gate (paired bootstrap against the champion) from
the terminal; a model that does not pass exits 3, and `--json` carries the comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ganops.model.bundle import save_bundle
from ganops.model.cli.evaluate import evaluate_main
from ganops.model.config import preset
from ganops.model.data import make_synthetic
from ganops.model.networks import build_generator
from ganops.pipeline.exit_codes import EXIT_GATED, EXIT_OK, EXIT_USAGE


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    data = make_synthetic(tmp_path_factory.mktemp("data"), n_train=4, n_test=6, image_size=32)
    net = preset("tiny")
    generator = build_generator(net, generator=torch.Generator().manual_seed(0))
    bundle = save_bundle(tmp_path_factory.mktemp("bundle"), generator, net, {"version": "1"})
    return data, bundle


@pytest.mark.slow  # a full evaluation and its bootstrap: ~10 s
def test_a_model_that_cannot_beat_itself_by_the_margin_is_rejected_with_exit_3(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, bundle = files
    argv = ["--model-uri", str(bundle), "--champion-uri", str(bundle), "--num-images", "6"]
    assert evaluate_main([*argv, str(data)]) == EXIT_OK  # no --gate: a report, exit 0
    capsys.readouterr()
    # The pipeline's margin lets an equal model through (bench/gate_validity.py measured it).
    assert evaluate_main([*argv, "--gate", str(data)]) == EXIT_OK
    assert "gate: passed: deploy score +0.0000 vs the champion" in capsys.readouterr().out
    # Asked to beat the champion by 0.01, the same model cannot: exit 3.
    strict = [*argv, "--gate", "--gate-margin", "0.01"]
    assert evaluate_main([*strict, str(data)]) == EXIT_GATED
    assert "gate: rejected: deploy score +0.0000 vs the champion" in capsys.readouterr().out
    assert evaluate_main([*strict, "--json", str(data)]) == EXIT_GATED
    document = json.loads(capsys.readouterr().out)
    assert document["gate"]["passed"] is False
    assert document["gate"]["diff"] == 0.0
    assert document["gate"]["margin"] == 0.01


@pytest.mark.slow
def test_gate_without_a_champion_is_a_usage_error(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, bundle = files
    assert evaluate_main(["--model-uri", str(bundle), "--gate", str(data)]) == EXIT_USAGE
    assert "--gate needs --champion-uri" in capsys.readouterr().err
