"""Input capture: sampling rate, off by default, retention, and the server path end to end."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ganops.model.errors import UsageError
from ganops.model.serving.capture import (
    CaptureConfig,
    CaptureSink,
    list_captured,
    make_sink,
    prune,
    read_captured,
)
from ganops.model.serving.server import ServeConfig, load_predictor, make_server, parse_args
from tests.fakes.serving import make_bundle, png_bytes, post, scenes
from tests.fakes.slack import eventually


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).random((n, 8, 8, 3), dtype=np.float32)


def test_the_sampling_rate_is_respected_within_statistical_bounds(tmp_path: Path) -> None:
    sink = CaptureSink(CaptureConfig(rate=0.1, uri=str(tmp_path)), model="cut", version="3", seed=1)
    offered = 3000
    queued = sum(sink.offer(_images(10)) for _ in range(offered // 10))
    sink.close()
    # Binomial(3000, 0.1): mean 300, sd 16.4; five sd either side.
    assert 218 <= queued <= 382
    assert sink.stored == queued
    assert len(list_captured(str(tmp_path), model="cut", version="3")) == queued


def test_nothing_is_captured_when_off(tmp_path: Path) -> None:
    assert make_sink(CaptureConfig(), model="cut", version="1") is None
    assert make_sink(CaptureConfig(rate=0.0, uri=str(tmp_path)), model="cut", version="1") is None
    sink = CaptureSink(CaptureConfig(rate=0.0, uri=str(tmp_path)), model="cut", version="1")
    assert sink.offer(_images(500)) == 0
    sink.close()
    assert list_captured(str(tmp_path)) == []
    assert ServeConfig(model_uri="x").capture.rate == 0.0


def test_retention_deletes_old_files_and_keeps_recent_ones(tmp_path: Path) -> None:
    now = time.time()
    clock_at = [now - 10 * 86400.0]
    config = CaptureConfig(rate=1.0, uri=str(tmp_path), days=7)
    sink = CaptureSink(config, model="cut", version="2", clock=lambda: clock_at[0])
    sink.offer(_images(3))
    sink.flush()
    clock_at[0] = now - 3600.0
    sink.offer(_images(2))
    sink.close()
    assert len(list_captured(str(tmp_path))) == 5
    assert prune(str(tmp_path), days=7, now=now) == 3
    left = list_captured(str(tmp_path))
    assert len(left) == 2
    assert all(now - c.time < 7 * 86400.0 for c in left)
    assert read_captured(str(tmp_path), left[0]).startswith(b"\x89PNG")


def test_bad_capture_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="needs a capture URI"):
        parse_args(["--model-uri", "x", "--capture-rate", "0.5"], {})
    with pytest.raises(UsageError, match="within"):
        parse_args(["--model-uri", "x"], {"GANOPS_CAPTURE_RATE": "2", "GANOPS_CAPTURE_URI": "/t"})
    config = parse_args(
        ["--model-uri", "x"], {"GANOPS_CAPTURE_RATE": "0.25", "GANOPS_CAPTURE_URI": "/t"}
    )
    assert config.capture == CaptureConfig(rate=0.25, uri="/t", days=30.0)


def test_the_server_captures_served_inputs_with_model_version_and_time(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle", version="7")
    store = tmp_path / "captured"
    config = ServeConfig(
        model_uri=str(bundle),
        port=0,
        device="cpu",
        capture=CaptureConfig(rate=1.0, uri=f"file://{store}", days=1),
    )
    httpd = make_server(config)
    httpd.state.ready(load_predictor(config))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1/stylize"
        before = time.time()
        for image in scenes(4, seed=5):
            assert post(url, png_bytes(image))[0] == 200
        found = eventually(lambda: (c := list_captured(str(store))) and len(c) == 4 and c)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert {(c.model, c.version) for c in found} == {("cut", "7")}
    assert all(before - 1 <= c.time <= time.time() for c in found)
