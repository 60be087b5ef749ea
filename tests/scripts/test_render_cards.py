"""The README's pictures: drawn from a real run, and re-drawn whenever a builder changes."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
IMG = ROOT / "docs" / "img"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_cards", ROOT / "scripts" / "render_cards.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rc() -> ModuleType:
    return _script()


def test_docs_img_was_rendered_from_todays_builders(rc: ModuleType) -> None:
    # Fails when a Block Kit builder's output for the pictured views changed and nobody ran
    # `python scripts/render_cards.py` (the stored hashes are of the payloads it drew).
    stored = json.loads((IMG / "blocks.sha256.json").read_text())
    assert rc.digests(rc.load_snapshot(IMG / "source")) == stored, (
        "docs/img is stale: run `python scripts/render_cards.py` and commit docs/img"
    )


def test_the_snapshot_is_a_real_run_whose_model_learned(rc: ModuleType) -> None:
    snap = rc.load_snapshot(IMG / "source")
    result = snap.result
    assert result["gate_passed"] is True
    assert result["champion_version"]  # judged against a champion, not the bootstrap
    assert result["gate_reason"].startswith(f"deploy score {result['deploy_score']:.4f}")
    # Learnt: the synthetic set has ground truth, and the identity scores ~0.1 SSIM on it.
    assert result["metrics"]["ssim"] > 0.5
    assert result["metrics"]["deploy_score"] > result["champion_metrics"]["deploy_score"]
    assert snap.progress["train_step"] < snap.progress["train_total"]
    grid = np.asarray(snap.grid.convert("RGB"), dtype=np.float32)
    assert grid.std() > 20  # a real grid, not a blank


def test_a_builder_change_makes_the_hash_differ(
    rc: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = rc.load_snapshot(IMG / "source")
    before = rc.digests(snap)
    original = rc.results_card

    def changed(view, approval_id):  # type: ignore[no-untyped-def]
        blocks = original(view, approval_id)
        return blocks[:-1]

    monkeypatch.setattr(rc, "results_card", changed)
    after = rc.digests(snap)
    assert after["results-card.png"] != before["results-card.png"]
    assert after["run-progress.png"] == before["run-progress.png"]


def test_check_mode_names_a_stale_picture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "img"
    shutil.copytree(IMG, out)
    stored = json.loads((out / "blocks.sha256.json").read_text())
    stored["results-card.png"] = "0" * 64
    (out / "blocks.sha256.json").write_text(json.dumps(stored))
    assert _script().main(["--check", "--out", str(out), "--snapshot", str(IMG / "source")]) == 1
    assert "results-card.png is stale" in capsys.readouterr().err


def test_no_real_run_means_no_pictures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = _script()
    (tmp_path / "state").mkdir()
    code = rc.main(["--out", str(tmp_path / "img"), "--snapshot", str(tmp_path / "snap")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no snapshot of a real run" in err
    assert "make demo" in err
    assert not (tmp_path / "img").exists()


@pytest.mark.slow  # draws every picture: seconds
def test_the_generator_draws_every_picture(tmp_path: Path) -> None:
    out = tmp_path / "img"
    cmd = [sys.executable, "scripts/render_cards.py", "--out", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=180)
    names = sorted(p.name for p in out.glob("*.png"))
    rc = _script()
    assert names == sorted(rc.payloads(rc.load_snapshot(IMG / "source")))
    assert {"results-card.png", "run-progress.png", "retrain-modal.png", "app-home.png"} <= set(
        names
    )
    assert json.loads((out / "blocks.sha256.json").read_text()) == json.loads(
        (IMG / "blocks.sha256.json").read_text()
    )
    card = Image.open(out / "results-card.png")
    grid = Image.open(IMG / "source" / "sample_grid.png")
    assert card.width == 800
    assert card.height > grid.height  # the grid is in the card's thread
