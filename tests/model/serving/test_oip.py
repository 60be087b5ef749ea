"""The Open Inference Protocol v2 and the bounds, against a real `ganops serve` process."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fakes.serving import (
    ServerProcess,
    get,
    make_bundle,
    png_bytes,
    post,
    scenes,
    start_server,
)

pytestmark = pytest.mark.slow
NAME = "ganops-cut"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    bundle = make_bundle(tmp_path_factory.mktemp("bundle"), version="7")
    server = start_server(bundle, "--max-inflight", "8", "--max-pixels", str(32 * 32 * 4))
    try:
        server.wait_ready()
        yield server
    finally:
        assert server.stop() == 0, server.output()
    assert "Traceback" not in server.output()


def infer_body(images: list[bytes], **extra: object) -> bytes:
    data = [base64.b64encode(b).decode() for b in images]
    tensor = {"name": "images", "datatype": "BYTES", "shape": [len(data)], "data": data}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def test_health_endpoints(served: ServerProcess) -> None:
    assert get(f"{served.url}/v2/health/live") == (200, b'{"live": true}')
    assert get(f"{served.url}/v2/health/ready") == (200, b'{"ready": true}')
    status, body = get(f"{served.url}/v2/models/{NAME}/ready")
    assert (status, json.loads(body)["ready"]) == (200, True)


def test_model_metadata(served: ServerProcess) -> None:
    status, body = get(f"{served.url}/v2/models/{NAME}")
    assert status == 200
    doc = json.loads(body)
    assert doc["name"] == NAME
    assert doc["versions"] == ["7"]
    assert doc["inputs"] == [{"name": "images", "datatype": "BYTES", "shape": [-1]}]
    assert doc["outputs"] == doc["inputs"]
    status, body = get(f"{served.url}/v2/models/ganops-cyclegan")
    assert status == 404
    assert "ganops-cut" in json.loads(body)["error"]


def test_infer_answers_like_v1(served: ServerProcess) -> None:
    images = [png_bytes(im) for im in scenes(2, seed=11)]
    status, body = post(
        f"{served.url}/v2/models/{NAME}/infer", infer_body(images, id="r1"), "application/json"
    )
    assert status == 200, body
    doc = json.loads(body)
    assert (doc["model_name"], doc["model_version"], doc["id"]) == (NAME, "7", "r1")
    (output,) = doc["outputs"]
    assert (output["datatype"], output["shape"]) == ("BYTES", [2])
    singles = [post(f"{served.url}/v1/stylize", im)[1] for im in images]
    assert [base64.b64decode(d) for d in output["data"]] == singles


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{nope", "bad JSON"),
        (b'{"inputs": []}', "expected"),
        (b'{"inputs": [{"name": "images", "datatype": "INT64", "shape": [1], "data": [1]}]}',
         "BYTES, UINT8 or FP32"),
        (b'{"inputs": [{"name": "images", "datatype": "FP32", "shape": [1], "data": [1.0]}]}',
         "[N, H, W, 3]"),
        (b'{"inputs": [{"name": "images", "datatype": "BYTES", "shape": [2], "data": ["aGk="]}]}',
         "shape"),
        (b'{"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": ["%%"]}]}',
         "base64"),
        (b'{"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}]}',
         "inputs[0].data[0]: not an image"),
    ],
)  # fmt: skip
def test_malformed_infer_gets_400_with_a_message(
    served: ServerProcess, body: bytes, message: str
) -> None:
    status, reply = post(f"{served.url}/v2/models/{NAME}/infer", body, "application/json")
    assert status == 400
    assert message in json.loads(reply)["error"]


def test_pixels_are_limited_per_request_not_only_per_side(served: ServerProcess) -> None:
    five = [png_bytes(im) for im in scenes(5, seed=12)]  # 5 x 32 x 32 > 4 x 32 x 32
    status, reply = post(
        f"{served.url}/v2/models/{NAME}/infer", infer_body(five), "application/json"
    )
    assert status == 413
    assert "--max-pixels" in json.loads(reply)["error"]
    assert (
        post(f"{served.url}/v2/models/{NAME}/infer", infer_body(five[:4]), "application/json")[0]
        == 200
    )


def post_with_retry_after(url: str, body: bytes) -> tuple[int, bytes, str | None]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), response.headers.get("Retry-After")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Retry-After")


def test_a_full_server_answers_503_and_keeps_serving(served: ServerProcess) -> None:
    body = infer_body([png_bytes(im) for im in scenes(4, seed=13)])
    url = f"{served.url}/v2/models/{NAME}/infer"
    with ThreadPoolExecutor(64) as pool:
        replies = list(pool.map(lambda _: post_with_retry_after(url, body), range(64)))
    statuses = [status for status, _, _ in replies]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 8
    busy = [(reply, retry) for status, reply, retry in replies if status == 503]
    assert all("in flight" in json.loads(reply)["error"] for reply, _ in busy)
    assert all(retry == "1" for _, retry in busy)
    assert get(f"{served.url}/v2/health/live")[0] == 200
    metrics = get(f"{served.url}/metrics")[1]
    assert f"gan_requests_rejected_total {float(len(busy))}".encode() in metrics
    assert post(url, body, "application/json")[0] == 200
    assert get(f"{served.url}/v2/health/ready")[0] == 200


def test_a_request_past_the_deadline_gets_504_and_frees_its_slot(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    server = start_server(bundle, "--deadline", "0.000001", "--max-inflight", "1")
    try:
        server.wait_ready()
        body = infer_body([png_bytes(scenes(1, seed=14)[0])])
        for _ in range(3):  # a slot held past the deadline would turn these into 503s
            status, reply = post(f"{server.url}/v2/models/{NAME}/infer", body, "application/json")
            assert status == 504
            assert "--deadline" in json.loads(reply)["error"]
        assert b"gan_request_timeouts_total 3.0" in get(f"{server.url}/metrics")[1]
        assert get(f"{server.url}/v2/health/ready")[0] == 200
    finally:
        assert server.stop() == 0
