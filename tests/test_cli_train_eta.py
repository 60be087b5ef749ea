"""`ganops train` prints its progress with an ETA from the recent rate, none before a rate;
`--json` puts the results on stdout as one document and the progress on stderr."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ganops.model.cli.train import train_main
from ganops.model.cli.train_run import ProgressPrinter
from ganops.model.train import ProgressEvent


def test_the_training_line_has_an_eta_once_there_is_a_rate() -> None:
    clock = [1000.0]
    out = io.StringIO()
    printer = ProgressPrinter(interval=0.0, clock=lambda: clock[0], out=out)
    printer(ProgressEvent(1, 1000, 0, {"G": 1.0}, 30.0, 4.0))  # the slow warm-up step
    clock[0] += 30.0
    for step in range(2, 201):  # then 2 steps/s for 100 s
        clock[0] += 0.5
        printer(ProgressEvent(step, 1000, 0, {"G": 1.0}, clock[0] - 1000, 8.0))
    lines = out.getvalue().splitlines()
    assert "ETA" not in lines[0]
    assert lines[-1] == "step 200/1000 (20%)  G 1.000  8 img/s  ETA 7 min"  # 800 at 2/s: 6m40s
    printer(ProgressEvent(1000, 1000, 0, {"G": 0.5}, 500.0, 8.0))
    assert "ETA" not in out.getvalue().splitlines()[-1]


@pytest.mark.slow  # a real training run
def test_train_json_is_one_document_and_progress_goes_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = ["--synthetic", "--preset", "tiny", "--steps", "2", "--batch-size", "1",
            "--image-size", "32", "--no-eval", "--out", str(tmp_path / "out"), "--json"]  # fmt: skip
    assert train_main(argv) == 0
    captured = capsys.readouterr()
    facts = json.loads(captured.out)  # the whole of stdout is the document
    assert facts["steps"] == 2
    assert facts["model"] == "cut"
    assert Path(facts["bundle"]).is_dir()
    assert set(facts["final_losses"])
    assert "step 2/2 (100%)" in captured.err  # the progress line, on stderr
