"""The model server over real HTTP: good and bad requests, readiness, metrics, the CLI."""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from ganops.model.bundle import load_bundle
from ganops.model.serving.http import ServerState
from ganops.model.serving.server import ServeConfig, load_predictor, make_server
from tests.fakes.serving import get, make_bundle, png_bytes, post, scenes, start_server

MAX_BYTES = 60_000
MAX_BATCH = 4
WINDOW = 16

Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle"), version="7")


@pytest.fixture(scope="module")
def server(bundle: Path) -> Iterator[tuple[str, ServerState]]:
    config = ServeConfig(
        model_uri=str(bundle),
        port=0,
        max_bytes=MAX_BYTES,
        max_batch=MAX_BATCH,
        window=WINDOW,
        drift_every=4,
        device="cpu",
    )
    httpd = make_server(config)
    httpd.state.ready(load_predictor(config))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def url(server: tuple[str, ServerState]) -> str:
    return server[0]


def metrics(url: str) -> Metrics:
    status, body = get(f"{url}/metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def requests_with(values: Metrics, status: int) -> float:
    return values.get(("gan_requests_total", frozenset({("status", str(status))})), 0.0)


def assert_still_serving(url: str) -> None:
    assert get(f"{url}/healthz")[0] == 200
    status, body = post(f"{url}/v1/stylize", png_bytes(scenes(1, seed=99)[0]))
    assert status == 200
    assert body.startswith(b"\x89PNG")


def test_health_and_readiness(url: str) -> None:
    assert get(f"{url}/healthz") == (200, b'{"status": "alive"}')
    status, body = get(f"{url}/readyz")
    assert status == 200
    assert json.loads(body) == {"ready": True, "model": "cut", "version": "7"}
    assert get(f"{url}/nope")[0] == 404


def test_stylize_matches_the_generator(url: str, bundle: Path) -> None:
    image = scenes(1, seed=3)[0]
    status, body = post(f"{url}/v1/stylize", png_bytes(image))
    assert status == 200
    served = np.asarray(Image.open(io.BytesIO(body)), dtype=np.float32) / 255.0
    assert served.shape == (32, 32, 3)
    # The same input through the bundle's generator directly, outside the server.
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(image))), dtype=np.float32) / 255.0
    generator = load_bundle(bundle).generator
    with torch.no_grad():
        out = generator(torch.from_numpy(decoded).permute(2, 0, 1)[None] * 2 - 1)
    expected = ((out[0].permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)
    assert np.abs(served - expected).max() <= 1.0 / 255 + 1e-6


def test_json_batch_keeps_order(url: str) -> None:
    images = scenes(3, seed=4)
    doc = {"images": [base64.b64encode(png_bytes(im)).decode() for im in images]}
    status, body = post(f"{url}/v1/stylize", json.dumps(doc).encode(), "application/json")
    assert status == 200
    outputs = json.loads(body)["images"]
    assert len(outputs) == 3
    singles = [post(f"{url}/v1/stylize", png_bytes(im))[1] for im in images]
    assert [base64.b64decode(o) for o in outputs] == singles


@pytest.mark.parametrize(
    ("mode", "fmt", "size"),
    [
        ("L", "PNG", 32),
        ("LA", "PNG", 32),
        ("RGBA", "PNG", 32),
        ("P", "PNG", 32),
        ("I;16", "PNG", 32),
        ("RGB", "JPEG", 48),
        ("CMYK", "JPEG", 32),
        ("L", "JPEG", 20),
    ],
)
def test_any_channel_layout_is_converted(url: str, mode: str, fmt: str, size: int) -> None:
    image = scenes(1, seed=5, image_size=size)[0]
    status, body = post(f"{url}/v1/stylize", png_bytes(image, mode=mode, fmt=fmt))
    assert status == 200, body
    out = Image.open(io.BytesIO(body))
    assert (out.format, out.mode, out.size) == ("PNG", "RGB", (32, 32))


def _bad_requests() -> list[tuple[str, bytes, str, int, str]]:
    good = png_bytes(scenes(1, seed=6)[0])

    def batch(items: list[str]) -> bytes:
        return json.dumps({"images": items}).encode()

    b64 = base64.b64encode(good).decode()
    return [
        ("not an image", b"hello, I am text", "image/png", 400, "not an image"),
        ("truncated", good[: len(good) // 2], "image/png", 400, "truncated"),
        ("empty", b"", "image/png", 400, "empty body"),
        ("too large", b"\x89PNG" + bytes(MAX_BYTES), "image/png", 413, "too large"),
        ("gif", png_bytes(scenes(1, seed=6)[0], fmt="GIF"), "image/gif", 415, "GIF"),
        ("bad json", b"{'images': [", "application/json", 400, "bad JSON"),
        ("json not a list", b'{"images": "x"}', "application/json", 400, "expected JSON"),
        ("empty batch", batch([]), "application/json", 400, "no images"),
        ("too many", batch([b64] * (MAX_BATCH + 1)), "application/json", 413, "too many"),
        ("bad base64", batch([b64, "%%%"]), "application/json", 400, "base64"),
        ("bad member", batch([b64, base64.b64encode(good[:40]).decode()]), "application/json",
         400, "images[1]"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [case[1:] for case in _bad_requests()],
    ids=[case[0] for case in _bad_requests()],
)
def test_bad_input_gets_4xx_and_the_server_keeps_serving(
    url: str, body: bytes, content_type: str, status: int, message: str
) -> None:
    before = requests_with(metrics(url), status)
    got, reply = post(f"{url}/v1/stylize", body, content_type)
    assert got == status
    assert message in json.loads(reply)["error"]
    assert requests_with(metrics(url), status) == before + 1
    assert_still_serving(url)


def raw_post(host: str, port: int, rest: bytes) -> bytes:
    """Send a hand-written POST (headers after Host, and body), then read the whole reply."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /v1/stylize HTTP/1.1\r\nHost: x\r\n" + rest)
        sock.shutdown(socket.SHUT_WR)
        return sock.makefile("rb").read()


def test_length_chunked_short_and_huge_bodies(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/v1/stylize")
    conn.putheader("Content-Type", "image/png")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 411
    assert "Content-Length" in json.loads(response.read())["error"]
    conn.close()
    chunked = b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert raw_post(host, int(port), chunked).startswith(b"HTTP/1.1 411")
    # A body shorter than announced: the client gives up sending.
    reply = raw_post(host, int(port), b"Content-Length: 1000\r\n\r\nabc")
    assert reply.startswith(b"HTTP/1.1 408")
    assert b"ended after 3 of 1000 bytes" in reply
    # Far over the limit and more than the socket buffers hold: still a clean 413.
    big = 4_000_000
    reply = raw_post(host, int(port), f"Content-Length: {big}\r\n\r\n".encode() + bytes(big))
    assert reply.startswith(b"HTTP/1.1 413")
    assert_still_serving(url)


def test_metrics_count_requests_batches_and_drift(url: str) -> None:
    before = metrics(url)
    images = scenes(WINDOW, seed=8)
    for image in images[:6]:
        assert post(f"{url}/v1/stylize", png_bytes(image))[0] == 200
    doc = {"images": [base64.b64encode(png_bytes(im)).decode() for im in images[6:10]]}
    assert post(f"{url}/v1/stylize", json.dumps(doc).encode(), "application/json")[0] == 200
    after = metrics(url)
    assert requests_with(after, 200) == requests_with(before, 200) + 7
    none: frozenset[tuple[str, str]] = frozenset()
    assert after[("gan_batch_size_count", none)] == before[("gan_batch_size_count", none)] + 7
    assert after[("gan_batch_size_sum", none)] == before[("gan_batch_size_sum", none)] + 10
    latency = ("gan_request_latency_seconds_count", none)
    assert after[latency] == before[latency] + 7
    labels = frozenset({("model", "cut"), ("version", "7")})
    assert after[("gan_model_info", labels)] == 1.0
    assert after[("gan_drift_window_fill", labels)] == 1.0  # earlier tests sent > WINDOW images
    score = after[("gan_input_drift_score", labels)]
    features = {
        dict(k[1])["feature"]: v
        for k, v in after.items()
        if k[0] == "gan_input_drift_feature_score"
    }
    assert len(features) == 8
    # The score is the largest of the MMD and per-feature ratios, so none exceeds it.
    assert score >= max(features.values()) - 1e-9


def test_not_ready_until_the_model_is_loaded(bundle: Path) -> None:
    httpd = make_server(ServeConfig(model_uri=str(bundle), port=0))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        assert get(f"{url}/healthz")[0] == 200
        status, body = get(f"{url}/readyz")
        assert (status, json.loads(body)["reason"]) == (503, "loading")
        status, body = post(f"{url}/v1/stylize", png_bytes(scenes(1, seed=1)[0]))
        assert status == 503
        assert "loading" in json.loads(body)["error"]
        assert b"gan_model_info{" not in get(f"{url}/metrics")[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.slow
def test_cli_serves_then_stops_cleanly_on_sigterm(bundle: Path) -> None:
    server = start_server(bundle, "--window", "16")
    try:
        server.wait_ready()
        assert post(f"{server.url}/v1/stylize", png_bytes(scenes(1, seed=2)[0]))[0] == 200
    finally:
        code = server.stop()
    output = server.output()
    assert code == 0, output
    assert "listening on" in output
    assert "ready: cut v7 on cpu (drift window 16)" in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_cli_exits_1_with_one_line_when_the_model_cannot_load(tmp_path: Path) -> None:
    server = start_server(tmp_path / "no-such-bundle")
    code = server.process.wait(timeout=120)
    output = server.output()
    assert code == 1, output
    assert "cannot load" in output
    assert "Traceback" not in output


def test_a_bundle_without_reference_serves_without_drift_gauges(
    tmp_path: Path, bundle: Path
) -> None:
    from ganops.model.bundle import save_bundle
    from ganops.model.serving.predictor import Predictor

    source = load_bundle(bundle)
    plain = save_bundle(tmp_path / "without", source.generator, source.net, {"version": "2"})
    predictor = Predictor.from_bundle(load_bundle(plain))
    assert predictor.monitor is None
    state = ServerState(ServeConfig(model_uri=str(plain)))
    state.ready(predictor)
    outputs = predictor.predict([predictor.decode(png_bytes(scenes(1, seed=1)[0]))]).outputs
    assert outputs[0].shape == (32, 32, 3)
    exposition = state.metrics.exposition().decode()
    assert 'gan_model_info{model="cut",version="2"} 1.0' in exposition
    assert "gan_input_drift_score{" not in exposition
    assert "gan_drift_window_fill{" not in exposition


def test_drift_reference_override_and_window(tmp_path: Path, bundle: Path) -> None:
    override = tmp_path / "reference.json"
    override.write_text((bundle / "drift_reference.json").read_text())
    config = ServeConfig(model_uri=str(bundle), drift_reference=override, window=24, device="cpu")
    predictor = load_predictor(config)
    assert predictor.monitor is not None
    assert predictor.monitor.reference.window == 24
    assert predictor.monitor.count == 0  # the warm-up forward does not touch the window


def test_request_counters_exist_at_zero_before_the_first_request() -> None:
    # Prometheus' increase() ignores a series' first sample: a status whose series appeared
    # with its first request would lose those requests (a canary's first 500s).
    from ganops.model.serving.metrics import ServingMetrics

    exposition = ServingMetrics().exposition().decode()
    for status in ("200", "400", "500", "503", "504"):
        assert f'gan_requests_total{{status="{status}"}} 0.0' in exposition
