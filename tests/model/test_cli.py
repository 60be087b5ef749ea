from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganops.model.bundle import load_bundle, save_bundle
from ganops.model.checkpoint import checkpoint_path, load_checkpoint
from ganops.model.cli import main
from ganops.model.cli.evaluate import evaluate_main, stylize_main, validate_main
from ganops.model.cli.train import train_main
from ganops.model.config import preset
from ganops.model.data import make_synthetic
from ganops.model.networks import build_generator

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("data"), n_train=12, n_test=6, image_size=32)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = preset("tiny")
    generator = build_generator(net, generator=torch.Generator().manual_seed(0))
    return save_bundle(tmp_path_factory.mktemp("bundle"), generator, net, {"version": "1"})


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ganops {command}: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "required"),
        (["--synthetic", "--model", "pix2pix"], "invalid choice"),
        (["--synthetic", "--steps", "0"], "must be positive"),
        (["--synthetic", "--lr", "fast"], "expected a number"),
        (["--synthetic", "--epochs", "1", "--steps", "2"], "not allowed with"),
        (["--synthetic", "--image-size", "30"], "multiple of 4"),
        (["--synthetic", "--preset", "huge"], "invalid choice"),
        (["--synthetic", "--register", "ganops-cut"], "--register needs"),
        (["/no/such/folder"], "no such data set folder"),
    ],
)
def test_train_rejects_bad_arguments_in_one_line(
    argv: list[str],
    needle: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert train_main(argv) == 2
    assert needle in _one_line_error(capsys, "train")


def test_train_rejects_corrupt_data_naming_the_file(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    for folder in ("trainA", "trainB", "testA", "testB"):
        (bad / folder).mkdir(parents=True)
        for image in sorted((data / folder).iterdir()):
            (bad / folder / image.name).write_bytes(image.read_bytes())
    (bad / "trainA" / "train_00003.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert train_main([str(bad), "--steps", "1", "--out", str(tmp_path / "out")]) == 2
    assert "trainA/train_00003.png" in _one_line_error(capsys, "train")


def test_validate_reports_ok_and_bad_data(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert validate_main([str(data)]) == 0
    assert "passed" in capsys.readouterr().out
    assert validate_main([str(tmp_path)]) == 2
    assert "missing folder" in _one_line_error(capsys, "validate")


@pytest.mark.slow
def test_evaluate_scores_a_bundle_against_a_champion(
    data: Path, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model-uri", str(bundle), "--champion-uri", str(bundle), "--out", str(tmp_path)]
    assert evaluate_main([*argv, "--num-images", "4", str(data)]) == 0
    out = capsys.readouterr().out
    assert "deploy score" in out
    assert "champion" in out
    assert (tmp_path / "sample_grid.png").is_file()


@pytest.mark.parametrize(
    "argv",
    [
        ["DATA"],  # no --model-uri
        ["--model-uri", "/no/such/bundle", "DATA"],
        ["--model-uri", "models:/nonsense", "DATA"],
        ["--model-uri", "BUNDLE", "/no/such/data"],
    ],
)
def test_evaluate_rejects_bad_arguments_in_one_line(
    argv: list[str], data: Path, bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("DATA", str(data)).replace("BUNDLE", str(bundle)) for a in argv]
    assert evaluate_main(argv) == 2
    _one_line_error(capsys, "evaluate")


def test_stylize_writes_one_image_per_input_with_the_same_name_and_size(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(src / "red.png")
    Image.new("RGBA", (30, 22), (0, 0, 255, 128)).save(src / "odd size.png")
    Image.new("L", (48, 40), 128).save(src / "grey.jpg")
    (src / "notes.txt").write_text("not an image")
    assert stylize_main(["--model-uri", str(bundle), str(src), str(tmp_path / "out")]) == 0
    assert "stylized 3 image(s)" in capsys.readouterr().out
    for name, size in (("red.png", (32, 32)), ("odd size.png", (30, 22)), ("grey.jpg", (48, 40))):
        with Image.open(tmp_path / "out" / name) as image:
            assert (image.size, image.mode) == (size, "RGB")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["red.png", "odd size.png", "grey.jpg"]
    )


def test_stylize_refuses_bad_input_before_writing_anything(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (32, 32)).save(src / "good.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    assert stylize_main(["--model-uri", str(bundle), str(src), str(out)]) == 2
    assert "broken.png" in _one_line_error(capsys, "stylize")
    assert not out.exists()
    assert stylize_main(["--model-uri", str(bundle), str(tmp_path / "none"), str(out)]) == 2
    _one_line_error(capsys, "stylize")
    assert stylize_main(["--model-uri", str(tmp_path), str(src), str(out)]) == 2
    _one_line_error(capsys, "stylize")


def test_module_entry_point_rejects_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fly"]) == 2
    assert "usage" in capsys.readouterr().err


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "model", *args]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.mark.slow
def test_a_real_process_reports_bad_arguments_without_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        _cli("train", "--synthetic", "--model", "nope"),
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "invalid choice" in proc.stderr


@pytest.mark.slow
def test_a_killed_training_process_resumes_at_the_checkpointed_step(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    total = 120
    args = ["train", str(data), "--steps", str(total), "--checkpoint-every", "5",
            "--batch-size", "2", "--threads", "1", "--no-eval", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(_cli(*args), env=_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    ckpt = checkpoint_path(out)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.is_file() and load_checkpoint(ckpt)["step"] >= 10:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    killed_at = load_checkpoint(ckpt)["step"]
    assert 10 <= killed_at < total, proc.stderr.read().decode() if proc.stderr else ""

    # Resumed with another --steps: the checkpoint's recipe wins (a retry on other hardware
    # must not change the run's length or schedule mid-way), and the run says so.
    resumed = subprocess.run(
        _cli(*args[:3], str(killed_at + 6), *args[4:], "--resume"),
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=240,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    said = resumed.stdout + resumed.stderr
    assert f"steps {killed_at + 6} -> {total}" in said
    steps = [line.split()[1] for line in said.splitlines() if line.startswith("step ")]
    assert steps[0] == f"{killed_at + 1}/{total}"
    assert steps[-1] == f"{total}/{total}"
    final = load_checkpoint(ckpt)
    assert final["step"] == total
    # Adam's own step counter carried over: it counts every update since step 0.
    adam_steps = [float(s["step"]) for s in final["optims"]["G"]["state"].values()]
    assert set(adam_steps) == {float(total)}


@pytest.mark.slow
def test_the_mlflow_run_holds_params_metrics_grid_and_a_registered_model(
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fresh_mlflow: Callable[[Path], str],
) -> None:
    from mlflow import MlflowClient

    uri = fresh_mlflow(tmp_path / "mlflow.db")
    argv = [str(data), "--steps", "4", "--batch-size", "2", "--out", str(tmp_path / "run"),
            "--tracking-uri", uri, "--register", "ganops-cut", "--quiet"]  # fmt: skip
    assert train_main(argv) == 0
    assert "registered ganops-cut version 1" in capsys.readouterr().out
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version("ganops-cut", "1")
    assert version.run_id is not None
    run = client.get_run(version.run_id)
    assert run.data.params["train.net.model"] == "cut"
    assert run.data.params["data_digest"].startswith("sha256:")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss_NCE")] == [1, 4]
    assert "deploy_score" in run.data.metrics
    assert "sample_grid.png" in {a.path for a in client.list_artifacts(run.info.run_id)}


@pytest.mark.slow  # a real training run
def test_a_cli_trained_bundle_carries_a_drift_reference_of_its_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_synthetic(tmp_path / "d", n_train=60, n_test=6, image_size=32)
    out = tmp_path / "out"
    argv = [str(data), "--preset", "tiny", "--steps", "2", "--no-eval", "--quiet"]
    assert train_main([*argv, "--out", str(out)]) == 0
    assert "drift: reference fitted on 60 images of trainA (window 26)" in capsys.readouterr().out
    bundles = [p.parent for p in out.rglob("drift_reference.json")]
    assert len(bundles) == 1
    reference = load_bundle(bundles[0]).drift_reference
    assert reference is not None
    assert reference["window"] == 26
