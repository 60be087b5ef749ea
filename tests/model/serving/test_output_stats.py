"""Output statistics (`gan_output_feature`) and a broken generator, on a real in-process server:
the means are those of the images the clients received, computed off the request path, and a
generator with non-finite output fails its requests with 500 in the OIP error shape."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from torch import nn

from ganops.model.features import FEATURE_NAMES, image_features
from ganops.model.serving.http import ServerState
from ganops.model.serving.output_stats import OutputStats
from ganops.model.serving.predictor import ModelError, Predictor
from ganops.model.serving.server import ServeConfig, load_predictor, make_server
from tests.fakes.serving import get, make_bundle, png_bytes, post, scenes

OUTPUT_WINDOW = 6
LABELS = {"model": "cut", "version": "7"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle"), version="7", window=16)


def serve(bundle: Path, *, broken: bool = False) -> tuple[str, ServerState, object]:
    config = ServeConfig(
        model_uri=str(bundle), port=0, device="cpu", output_window=OUTPUT_WINDOW, drift_every=4
    )
    httpd = make_server(config)
    predictor = load_predictor(config)
    if broken:  # a challenger whose weights went NaN in training
        with torch.no_grad():
            for parameter in predictor.generator.parameters():
                parameter.fill_(float("nan"))
    httpd.state.ready(predictor)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state, httpd


@pytest.fixture
def server(bundle: Path) -> Iterator[tuple[str, ServerState]]:
    url, state, httpd = serve(bundle)
    yield url, state
    httpd.shutdown()  # type: ignore[attr-defined]
    httpd.server_close()  # type: ignore[attr-defined]


@pytest.fixture
def broken(bundle: Path) -> Iterator[tuple[str, ServerState]]:
    url, state, httpd = serve(bundle, broken=True)
    yield url, state
    httpd.shutdown()  # type: ignore[attr-defined]
    httpd.server_close()  # type: ignore[attr-defined]


def samples(url: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    status, body = get(f"{url}/metrics")
    assert status == 200
    return {
        frozenset(s.labels.items()): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == name
    }


def output_means(url: str) -> dict[str, float]:
    found = samples(url, "gan_output_feature")
    means = {}
    for labels, value in found.items():
        named = dict(labels)
        assert {k: named[k] for k in LABELS} == LABELS
        means[named["feature"]] = value
    return means


def decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.float32) / 255.0


def test_the_rolling_window_keeps_the_last_n_images() -> None:
    stats = OutputStats(window=4)
    assert stats.means() == {}
    rows = np.arange(7 * len(FEATURE_NAMES), dtype=float).reshape(7, -1)
    stats.add(rows[:3])
    assert stats.means()["brightness"] == pytest.approx(rows[:3, 0].mean())
    stats.add(rows[3:5])  # wraps around: rows 1..4 remain
    assert stats.means()["brightness"] == pytest.approx(rows[1:5, 0].mean())
    means = stats.add(rows)  # more rows than the window in one call: its last 4
    assert means["noise"] == pytest.approx(rows[3:, 7].mean())
    assert stats.count == 12
    with pytest.raises(ValueError, match="at least 1"):
        OutputStats(window=0)


def test_output_feature_means_are_those_of_the_images_served(
    server: tuple[str, ServerState],
) -> None:
    url, state = server
    assert output_means(url) == {}  # nothing served yet: no series, not zeros
    served = []
    for image in scenes(OUTPUT_WINDOW + 3, seed=21):  # more than the window
        status, body = post(f"{url}/v1/stylize", png_bytes(image))
        assert status == 200
        served.append(decoded(body))
    assert state.drift_worker is not None
    state.drift_worker.wait_idle()
    means = output_means(url)
    assert set(means) == set(FEATURE_NAMES)
    # The last OUTPUT_WINDOW outputs, as the clients got them (PNG: 8 bits a channel).
    expected = image_features(np.stack(served[-OUTPUT_WINDOW:])).mean(axis=0)
    for name, value in zip(FEATURE_NAMES, expected, strict=True):
        assert means[name] == pytest.approx(value, abs=0.01), name
    # Outputs, not inputs: the inputs' means differ (the untrained generator changes images).
    inputs = image_features(scenes(OUTPUT_WINDOW + 3, seed=21)[-OUTPUT_WINDOW:]).mean(axis=0)
    assert abs(means["brightness"] - inputs[0]) > 0.02


def test_output_statistics_stay_off_the_request_thread(bundle: Path) -> None:
    config = ServeConfig(model_uri=str(bundle), device="cpu", output_window=OUTPUT_WINDOW)
    predictor = load_predictor(config)
    state = ServerState(config)
    gate = threading.Event()
    state.ready(predictor)
    worker = state.drift_worker
    assert worker is not None
    held = worker.outputs
    assert held is not None
    original = held.add_images

    def slow(images: np.ndarray) -> dict[str, float]:
        gate.wait(10)  # the worker is stuck; requests must not be
        return original(images)

    held.add_images = slow  # type: ignore[method-assign]
    try:
        for image in scenes(3, seed=5):
            predictor.predict([image])  # returns although the statistics cannot progress
        assert held.count == 0
    finally:
        gate.set()
        worker.wait_idle()
        state.close()
    assert held.count == 3


class Infinite(nn.Module):
    """A generator whose output overflows: the clamp alone would serve it as white."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, float("inf"))


def test_an_infinite_output_is_a_model_error_not_a_white_image() -> None:
    predictor = Predictor(Infinite(), 32, model="cut", version="9")
    with pytest.raises(ModelError, match="cut v9 produced non-finite output"):
        predictor.predict([np.zeros((32, 32, 3), np.float32)])


def test_a_nan_generator_fails_requests_with_500_and_they_are_counted(
    broken: tuple[str, ServerState],
) -> None:
    url, state = broken
    image = png_bytes(scenes(1, seed=3)[0])
    status, body = post(f"{url}/v1/stylize", image)
    assert status == 500
    assert "non-finite output" in json.loads(body)["error"]
    data = [base64.b64encode(image).decode()]
    tensor = {"name": "images", "datatype": "BYTES", "shape": [1], "data": data}
    infer = json.dumps({"inputs": [tensor]}).encode()
    status, body = post(f"{url}/v2/models/ganops-cut/infer", infer, "application/json")
    assert status == 500
    assert set(json.loads(body)) == {"error"}  # the OIP error shape
    assert "non-finite output" in json.loads(body)["error"]
    requests = samples(url, "gan_requests_total")
    assert requests.get(frozenset({("status", "500")})) == 2
    assert requests.get(frozenset({("status", "200")})) == 0  # there from the start, at 0
    assert state.drift_worker is not None
    state.drift_worker.wait_idle()
    assert output_means(url) == {}  # a failed request's output is not a statistic
    assert get(f"{url}/healthz")[0] == 200


def test_the_output_window_flag() -> None:
    from ganops.model.errors import UsageError
    from ganops.model.serving.server import parse_args

    assert parse_args(["--model-uri", "b"], {}).output_window == 256
    assert parse_args(["--model-uri", "b", "--output-window", "32"], {}).output_window == 32
    with pytest.raises(UsageError, match="--output-window"):
        parse_args(["--model-uri", "b", "--output-window", "0"], {})
