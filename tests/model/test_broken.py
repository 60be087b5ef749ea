"""`python -m ganops.model.broken`: the demo's broken challenger is a real registered version
that loads like any other model and makes only NaN images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from ganops.model import broken
from ganops.model.bundle import load_bundle, save_bundle
from ganops.model.config import preset
from ganops.model.networks import build_generator
from ganops.model.tracking import MlflowTracker

NET = preset("tiny", ngf=8, n_blocks=1)


@pytest.mark.slow
def test_the_broken_copy_registers_a_new_version_whose_outputs_are_nan(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fresh_mlflow: Callable[[Path], str],
) -> None:
    store = fresh_mlflow(tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    tracker = MlflowTracker(store)
    generator = build_generator(NET, generator=torch.Generator().manual_seed(0))
    bundle_dir = save_bundle(tmp_path / "bundle", generator, NET, {"data_digest": "sha256:d"})
    with tracker.start_run("train"):
        version = tracker.log_bundle(bundle_dir, generator, "ganops-cut")
    assert version == "1"
    tracker.set_alias("ganops-cut", "champion", "1")

    assert broken.main(["--model", "cut"]) == 0
    assert capsys.readouterr().out.strip() == "2"
    good = load_bundle("models:/ganops-cut/1", tracking_uri=store)
    bad = load_bundle("models:/ganops-cut/2", tracking_uri=store)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.isfinite(good.generator(x)).all()
        assert torch.isnan(bad.generator(x)).all()
    tags = tracker.client.get_model_version("ganops-cut", "2").tags
    assert "NaN" in tags["broken"]


def test_without_a_champion_it_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str],
                                       fresh_mlflow: Callable[[Path], str]) -> None:  # fmt: skip
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_mlflow(tmp_path / "mlflow.db"))
    assert broken.main(["--model", "cut"]) == 2
    assert "cannot load the champion of ganops-cut" in capsys.readouterr().err
