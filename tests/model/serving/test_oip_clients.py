"""Open Inference Protocol v2 conformance: stock clients this project did not write
(tritonclient.http and KServe's InferenceRESTClient) against a real `ganops serve` process."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

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
NAME = "stylizer"  # as a KServe InferenceService would be called: --model-name via the env
VERSION = "7"


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("capture")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, capture: Path) -> Iterator[ServerProcess]:
    bundle = make_bundle(tmp_path_factory.mktemp("bundle"), version=VERSION)
    server = start_server(
        bundle,
        "--max-pixels",
        str(8 * 32 * 32),
        "--capture-rate",
        "1",
        "--capture-uri",
        str(capture),
        env={"GANOPS_MODEL_NAME": NAME},
    )
    try:
        server.wait_ready()
        yield server
    finally:
        assert server.stop() == 0, server.output()
    assert "Traceback" not in server.output()


@pytest.fixture(scope="module")
def client(served: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(served.url.removeprefix("http://"))
    yield c
    c.close()


def pngs(n: int, seed: int) -> list[bytes]:
    return [png_bytes(im) for im in scenes(n, seed=seed)]


def pixels(files: list[bytes]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in files])


def bytes_input(files: list[bytes], *, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("images", [len(files)], "BYTES")
    # JSON carries text only, so a JSON element is the file's base64; binary carries the file.
    items = files if binary else [base64.b64encode(f) for f in files]
    tensor.set_data_from_numpy(np.array(items, dtype=np.object_), binary_data=binary)
    return tensor


def tensor_input(array: np.ndarray, datatype: str, *, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("images", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def test_server_and_model_metadata(client: triton.InferenceServerClient) -> None:
    meta = client.get_server_metadata()
    assert meta["name"] == "ganops"
    assert "binary_tensor_data" in meta["extensions"]
    assert client.is_server_live()
    assert client.is_server_ready()
    for version in ("", VERSION):
        model = client.get_model_metadata(NAME, version)
        assert (model["name"], model["versions"]) == (NAME, [VERSION])
        assert model["inputs"] == [{"name": "images", "datatype": "BYTES", "shape": [-1]}]
        assert model["parameters"]["datatypes"] == "BYTES,UINT8,FP32"
        assert model["parameters"]["output_tensor_shape"] == "[-1, 32, 32, 3]"
        assert client.is_model_ready(NAME, version)
    assert not client.is_model_ready(NAME, "8")
    assert not client.is_model_ready("ganops-cut")  # the name is the flag's, not the default
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata(NAME, "8")
    assert info.value.status() == "404"
    assert "no version '8'" in info.value.message()


def metric(url: str, name: str) -> float:
    for line in get(f"{url}/metrics")[1].decode().splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_tensor_inputs_are_counted_scored_for_drift_and_captured(
    served: ServerProcess, client: triton.InferenceServerClient, capture: Path
) -> None:
    # Defined before the tests that send images: the window (32) is still filling here.
    fill = f'gan_drift_window_fill{{model="cut",version="{VERSION}"}}'
    before = (metric(served.url, "gan_batch_size_sum"), metric(served.url, fill))
    array = pixels(pngs(4, seed=27))
    client.infer(NAME, [tensor_input(array, "UINT8", binary=True)])
    client.infer(NAME, [tensor_input(array.astype(np.float32) / 255, "FP32", binary=False)])
    assert metric(served.url, "gan_batch_size_sum") == before[0] + 8
    deadline = time.monotonic() + 10
    while metric(served.url, fill) <= before[1] and time.monotonic() < deadline:
        time.sleep(0.1)  # drift features run on their own thread
    assert metric(served.url, fill) > before[1]
    captured = list((capture / "cut" / VERSION).glob("*.png"))
    deadline = time.monotonic() + 10
    while len(captured) < 8 and time.monotonic() < deadline:
        time.sleep(0.1)
        captured = list((capture / "cut" / VERSION).glob("*.png"))
    assert len(captured) >= 8


@pytest.mark.parametrize("binary", [True, False])
def test_bytes_in_and_out_match_v1(
    served: ServerProcess, client: triton.InferenceServerClient, binary: bool
) -> None:
    files = pngs(3, seed=21)
    out = triton.InferRequestedOutput("images", binary_data=binary)
    result = client.infer(NAME, [bytes_input(files, binary=binary)], outputs=[out], request_id="r1")
    output = result.get_output("images")
    assert (output["datatype"], output["shape"]) == ("BYTES", [3])
    assert ("binary_data_size" in (output.get("parameters") or {})) is binary
    got = list(result.as_numpy("images"))
    if not binary:
        got = [base64.b64decode(g) for g in got]
    singles = [post(f"{served.url}/v1/stylize", f)[1] for f in files]
    assert got == singles
    assert result.get_response()["id"] == "r1"


@pytest.mark.parametrize("binary", [True, False])
def test_uint8_and_fp32_tensors_give_the_same_images_as_files(
    client: triton.InferenceServerClient, binary: bool
) -> None:
    files = pngs(2, seed=22)
    reference = client.infer(NAME, [bytes_input(files, binary=True)]).as_numpy("images")
    expected = pixels(list(reference))  # the PNG outputs' pixels: [2, 32, 32, 3] uint8
    u8 = client.infer(
        NAME,
        [tensor_input(pixels(files), "UINT8", binary=binary)],
        outputs=[triton.InferRequestedOutput("images", binary_data=binary)],
        model_version=VERSION,
    )
    assert u8.get_output("images")["shape"] == [2, 32, 32, 3]
    assert np.array_equal(u8.as_numpy("images"), expected)
    fp = client.infer(
        NAME,
        [tensor_input(pixels(files).astype(np.float32) / 255.0, "FP32", binary=binary)],
        outputs=[triton.InferRequestedOutput("images", binary_data=binary)],
    )
    values = fp.as_numpy("images")
    assert (values.dtype, values.shape) == (np.float32, (2, 32, 32, 3))
    assert np.array_equal((values * 255.0 + 0.5).astype(np.uint8), expected)


def test_tensors_at_another_size_are_resized(client: triton.InferenceServerClient) -> None:
    big = (scenes(2, seed=23, image_size=48) * 255 + 0.5).astype(np.uint8)
    result = client.infer(NAME, [tensor_input(big, "UINT8", binary=True)])
    assert result.as_numpy("images").shape == (2, 32, 32, 3)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(
    served: ServerProcess, client: triton.InferenceServerClient, algorithm: str
) -> None:
    files = pngs(1, seed=28)
    plain = client.infer(NAME, [bytes_input(files, binary=True)]).as_numpy("images")
    packed = client.infer(
        NAME, [bytes_input(files, binary=True)], request_compression_algorithm=algorithm
    )
    assert list(packed.as_numpy("images")) == list(plain)
    bomb = gzip.compress(b"{" + b" " * (9 * 1024 * 1024) + b"}")  # over --max-bytes unpacked
    request = urllib.request.Request(
        f"{served.url}/v2/models/{NAME}/infer",
        data=bomb,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 413
    assert "once decompressed" in json.loads(info.value.read())["error"]


def test_binary_data_output_for_the_whole_request(served: ServerProcess) -> None:
    """`binary_data_output` without `outputs`, read by hand: the header names the JSON's
    length, and the BYTES element follows as a 4-byte length and the PNG."""
    files = pngs(1, seed=24)
    raw = len(files[0]).to_bytes(4, "little") + files[0]
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "images",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    request = urllib.request.Request(
        f"{served.url}/v2/models/{NAME}/versions/{VERSION}/infer",
        data=header + raw,
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        size = int(response.headers["Inference-Header-Content-Length"])
        assert response.headers["Content-Type"] == "application/octet-stream"
        body = response.read()
    doc = json.loads(body[:size])
    (output,) = doc["outputs"]
    assert output["parameters"]["binary_data_size"] == len(body) - size
    assert "data" not in output
    length = int.from_bytes(body[size : size + 4], "little")
    assert body[size + 4 : size + 4 + length] == post(f"{served.url}/v1/stylize", files[0])[1]


def test_kserve_rest_client(served: ServerProcess) -> None:
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput

    files = pngs(2, seed=25)

    async def run() -> tuple[bool, bool, bool, object, object]:
        async with InferenceRESTClient(RESTConfig(protocol="v2", retries=0)) as kc:
            live = await kc.is_server_live(served.url)
            ready = await kc.is_server_ready(served.url)
            model_ready = await kc.is_model_ready(served.url, NAME)
            b64 = [base64.b64encode(f).decode() for f in files]
            as_json = InferRequest(
                model_name=NAME,
                infer_inputs=[InferInput("images", [2], "BYTES", data=b64)],
                request_id="k1",
            )
            files_out = await kc.infer(served.url, as_json, model_name=NAME)
            tensor = InferInput("images", [2, 32, 32, 3], "UINT8")
            tensor.set_data_from_numpy(pixels(files), binary_data=True)
            as_binary = InferRequest(
                model_name=NAME,
                infer_inputs=[tensor],
                request_outputs=[RequestedOutput("images", {"binary_data": True})],
            )
            pixels_out = await kc.infer(served.url, as_binary, model_name=NAME)
            # Binary PNG files in; base64 JSON out (its parser reads binary BYTES as UTF-8).
            raw_files = InferInput("images", [2], "BYTES")
            raw_files.set_data_from_numpy(np.array(files, dtype=np.object_), binary_data=True)
            binary_in = InferRequest(
                model_name=NAME,
                infer_inputs=[raw_files],
                request_outputs=[RequestedOutput("images", {"binary_data": False})],
            )
            again = await kc.infer(served.url, binary_in, model_name=NAME)
            assert [base64.b64decode(d) for d in again.outputs[0].data] == [
                base64.b64decode(d) for d in files_out.outputs[0].data
            ]
            return live, ready, model_ready, files_out, pixels_out

    live, ready, model_ready, files_out, pixels_out = asyncio.run(run())
    assert (live, ready, model_ready) == (True, True, True)
    (out,) = files_out.outputs  # type: ignore[attr-defined]
    assert (out.name, out.datatype, out.shape) == ("images", "BYTES", [2])
    assert files_out.id == "k1"  # type: ignore[attr-defined]
    decoded = [base64.b64decode(d) for d in out.data]
    (px,) = pixels_out.outputs  # type: ignore[attr-defined]
    assert (px.datatype, px.shape) == ("UINT8", [2, 32, 32, 3])
    assert np.array_equal(px.as_numpy(), pixels(decoded))


def test_an_output_may_ask_for_another_datatype(served: ServerProcess) -> None:
    files = pngs(1, seed=26)
    body = {
        "inputs": [
            {
                "name": "images",
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(files[0]).decode()],
            }
        ],
        "outputs": [{"name": "images", "parameters": {"datatype": "UINT8"}}],
    }
    status, reply = post(
        f"{served.url}/v2/models/{NAME}/infer", json.dumps(body).encode(), "application/json"
    )
    assert status == 200, reply
    (output,) = json.loads(reply)["outputs"]
    assert (output["datatype"], output["shape"]) == ("UINT8", [1, 32, 32, 3])
    single = post(f"{served.url}/v1/stylize", files[0])[1]
    assert np.array_equal(np.array(output["data"]).reshape(1, 32, 32, 3), pixels([single]))


def raw_infer(
    url: str, header: dict[str, object], raw: bytes = b""
) -> tuple[int, dict[str, object]]:
    head = json.dumps(header).encode()
    headers = {"Content-Type": "application/octet-stream"}
    if raw:
        headers["Inference-Header-Content-Length"] = str(len(head))
    request = urllib.request.Request(url, data=head + raw, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _tensor(datatype: str, shape: list[int], **fields: object) -> dict[str, object]:
    return {"inputs": [{"name": "images", "datatype": datatype, "shape": shape, **fields}]}


@pytest.mark.parametrize(
    ("header", "raw", "status", "message"),
    [
        (_tensor("UINT8", [1, 4, 4, 3], parameters={"binary_data_size": 47}), bytes(48), 400,
         "binary_data_size is 47, but 48 bytes follow"),
        (_tensor("UINT8", [1, 4, 4], parameters={"binary_data_size": 48}), bytes(48), 400,
         "[N, H, W, 3]"),
        (_tensor("FP32", [1, 1, 1, 3], data=[0.0, 0.5, 255.0]), b"", 400, "must be in [0, 1]"),
        (_tensor("UINT8", [1, 1, 1, 3], data=[0, 1, 256]), b"", 400, "integers 0..255"),
        (_tensor("UINT8", [2, 1, 1, 3], data=[0, 1, 2]), b"", 400, "does not match 3"),
        (_tensor("BYTES", [1], parameters={"binary_data_size": 3}), b"\x09\x00\x00", 400,
         "ends inside"),
        ({**_tensor("UINT8", [1, 1, 1, 3], data=[0, 1, 2]), "outputs": [{"name": "other"}]}, b"",
         400, "no output 'other'"),
        (_tensor("UINT8", [1, 96, 96, 3], data=[0] * (96 * 96 * 3)), b"", 413, "--max-pixels"),
    ],
)  # fmt: skip
def test_bad_bodies_get_a_clear_error_in_the_spec_shape(
    served: ServerProcess, header: dict[str, object], raw: bytes, status: int, message: str
) -> None:
    got, doc = raw_infer(f"{served.url}/v2/models/{NAME}/infer", header, raw)
    assert got == status
    assert list(doc) == ["error"]
    assert message in str(doc["error"])


def test_header_length_past_the_body_is_refused(served: ServerProcess) -> None:
    request = urllib.request.Request(
        f"{served.url}/v2/models/{NAME}/infer",
        data=b"{}",
        headers={"Inference-Header-Content-Length": "99"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 400
    assert "Inference-Header-Content-Length is 99" in json.loads(info.value.read())["error"]


def test_unknown_model_404_and_wrong_method_405(served: ServerProcess) -> None:
    status, body = get(f"{served.url}/v2/models/ganops-cut/ready")
    assert (status, list(json.loads(body))) == (404, ["error"])
    status, body = get(f"{served.url}/v2/models/{NAME}/versions/8/ready")
    assert status == 404
    request = urllib.request.Request(f"{served.url}/v2/models/{NAME}/infer")  # a GET
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 405
    assert info.value.headers["Allow"] == "POST"
    assert "method not allowed" in json.loads(info.value.read())["error"]
    assert post(f"{served.url}/v2", b"{}", "application/json")[0] == 405


def test_model_ready_answers_503_while_loading_and_draining(tmp_path: Path) -> None:
    """In process, to hold the server between states: stock clients read the status code."""
    from ganops.model.serving.server import ServeConfig, load_predictor, make_server

    # As KServe runs it: a plain folder from its storage initializer, the version given.
    config = ServeConfig(
        model_uri=str(make_bundle(tmp_path / "b")),
        port=0,
        device="cpu",
        model_name=NAME,
        model_version="42",
    )
    httpd = make_server(config)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"127.0.0.1:{httpd.server_address[1]}"
    c = triton.InferenceServerClient(url)
    try:
        status, body = get(f"http://{url}/v2/models/{NAME}/ready")
        assert (status, json.loads(body)["reason"]) == (503, "loading")
        assert get(f"http://{url}/v2/models/other/ready")[0] == 404  # the name is known early
        assert not c.is_model_ready(NAME)
        httpd.state.ready(load_predictor(config))
        assert c.is_model_ready(NAME)
        assert c.is_server_ready()
        assert c.get_model_metadata(NAME, "42")["versions"] == ["42"]
        assert b'gan_model_info{model="cut",version="42"} 1.0' in get(f"http://{url}/metrics")[1]
        httpd.state.stopping = True  # what SIGTERM sets while in-flight requests finish
        status, body = get(f"http://{url}/v2/models/{NAME}/ready")
        assert (status, json.loads(body)) == (
            503,
            {"name": NAME, "ready": False, "reason": "stopping"},
        )
        assert not c.is_model_ready(NAME)
        assert not c.is_server_ready()
    finally:
        c.close()
        httpd.shutdown()
        httpd.server_close()


def test_model_name_flag_env_and_default() -> None:
    from ganops.model.errors import UsageError
    from ganops.model.serving.server import parse_args

    assert parse_args(["--model-uri", "b"], {}).model_name is None  # ganops-<model> once loaded
    env = {"GANOPS_MODEL_NAME": "from-env"}
    assert parse_args(["--model-uri", "b"], env).model_name == "from-env"
    assert parse_args(["--model-uri", "b", "--model-name", "isvc"], env).model_name == "isvc"
    assert parse_args(["--model-uri", "b"], {"GANOPS_MODEL_VERSION": "9"}).model_version == "9"
    with pytest.raises(UsageError, match="letters, digits"):
        parse_args(["--model-uri", "b", "--model-name", "a/b"], {})
