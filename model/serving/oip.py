"""Open Inference Protocol v2 (REST) infer bodies, with Triton's binary tensor data extension;
no HTTP server, no event loop.

A request carries one input tensor of images, in one of three forms:
- `BYTES`, shape `[N]` (or `[N, 1]`): PNG/JPEG files; in JSON each element is base64 text
  (JSON cannot carry raw bytes), as binary data the file itself;
- `UINT8`, shape `[N, H, W, 3]`: RGB pixels 0..255;
- `FP32`, shape `[N, H, W, 3]`: RGB pixels in [0, 1].
The one output, `images`, mirrors the input's datatype unless the request's output asks for
another (`parameters.datatype`); its shape is the real one: `[N]` for BYTES, `[N, S, S, 3]` for
tensors at the model's size S. Binary data: an input with `parameters.binary_data_size` reads
its bytes after the JSON header (`Inference-Header-Content-Length`); an output is answered as
binary when its `parameters.binary_data` or the request's `binary_data_output` says so.

`parse` runs on a worker thread (as the forward does), and every mistake a client can make is
an `InputError` naming the field, never a traceback.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np

from ganops.model.serving import tensors
from ganops.model.serving.predictor import InputError

TENSOR = "images"  # the name of the one input and the one output
DATATYPES = ("BYTES", "UINT8", "FP32")
HEADER = "Inference-Header-Content-Length"
EXTENSIONS = ("binary_tensor_data",)


@dataclass(frozen=True)
class Output:
    """How the request wants the output: its datatype and whether as binary data."""

    datatype: str
    binary: bool


@dataclass(frozen=True)
class Request:
    id: str | None
    datatype: str
    blobs: list[bytes] | None  # BYTES: the image files
    pixels: np.ndarray | None  # UINT8/FP32: N x H x W x 3 float32 in [0, 1]
    output: Output

    @property
    def count(self) -> int:
        if self.blobs is not None:
            return len(self.blobs)
        return 0 if self.pixels is None else int(self.pixels.shape[0])


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """The body as sent before `Content-Encoding` (gzip, deflate), at most `limit` bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InputError(f"unsupported Content-Encoding {encoding!r}; use gzip or deflate", 415)
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise InputError(f"the body is not valid {encoding} data") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise InputError(f"body too large once decompressed: > --max-bytes {limit}", 413)
    return out


def parse(body: bytes, header_length: str | None, *, max_batch: int, max_pixels: int) -> Request:
    """An infer body (JSON, then binary tensor data when `header_length` is given)."""
    header, rest = _split(body, header_length)
    doc = _load(header)
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InputError(
            'expected {"inputs": [{"name": "images", "datatype": "BYTES"|"UINT8"|"FP32", '
            '"shape": [...], "data": [...]}]}: one input tensor of images'
        )
    tensor = inputs[0]
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise InputError(f"inputs[0].datatype must be BYTES, UINT8 or FP32, got {datatype!r}")
    shape = tensor.get("shape")
    if not _is_shape(shape):
        raise InputError(f"inputs[0].shape must be a list of non-negative integers, got {shape!r}")
    raw = _binary_part(tensor, rest)
    request_id = doc.get("id")
    output = _output(doc, datatype)
    rid = None if request_id is None else str(request_id)
    if datatype == "BYTES":
        blobs = tensors.blobs(tensor, shape, raw, max_batch)
        return Request(rid, datatype, blobs, None, output)
    pixels = tensors.pixels(tensor, datatype, shape, raw, max_batch, max_pixels)
    return Request(rid, datatype, None, pixels, output)


def reply_doc(
    *, name: str, version: str, request: Request, outputs: list[np.ndarray], encode: Any
) -> tuple[dict[str, Any], bytes | None]:
    """The response's JSON and, when the output goes as binary data, its bytes.

    `outputs` are H x W x 3 float images in [0, 1]; `encode` makes one PNG of one."""
    want = request.output
    if want.datatype == "BYTES":
        files = [encode(o) for o in outputs]
        shape = [len(files)]
        raw = b"".join(struct.pack("<I", len(f)) + f for f in files) if want.binary else None
        data: list[Any] | None = None if want.binary else _b64(files)
    else:
        stacked = np.clip(np.stack(outputs), 0.0, 1.0)
        if want.datatype == "UINT8":
            array = (stacked * 255.0 + 0.5).astype(np.uint8)
        else:
            array = stacked.astype("<f4")
        shape = list(array.shape)
        raw = array.tobytes() if want.binary else None
        data = None if want.binary else array.ravel().tolist()
    tensor: dict[str, Any] = {"name": TENSOR, "datatype": want.datatype, "shape": shape}
    if raw is not None:
        tensor["parameters"] = {"binary_data_size": len(raw)}
    else:
        tensor["data"] = data
    doc: dict[str, Any] = {"model_name": name, "model_version": version, "outputs": [tensor]}
    if request.id is not None:
        doc["id"] = request.id
    return doc, raw


def metadata(*, name: str, version: str, image_size: int) -> dict[str, Any]:
    """Model metadata: the tensor in its default form (BYTES), and in `parameters` (scalars,
    as the spec types them) the other datatypes it takes and the size outputs come at."""
    tensor = {"name": TENSOR, "datatype": "BYTES", "shape": [-1]}
    return {
        "name": name,
        "versions": [version],
        "platform": "pytorch",
        "inputs": [tensor],
        "outputs": [tensor],
        "parameters": {
            "image_size": image_size,
            "content_type": "base64 PNG/JPEG",
            "datatypes": ",".join(DATATYPES),
            "tensor_shape": "[-1, -1, -1, 3]",
            "output_tensor_shape": f"[-1, {image_size}, {image_size}, 3]",
        },
    }


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "ganops", "version": version, "extensions": list(EXTENSIONS)}


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if not body:
        raise InputError("empty body: send an inference request (JSON)")
    if header_length is None:
        return body, b""
    try:
        size = int(header_length)
    except ValueError:
        raise InputError(f"{HEADER} must be an integer, got {header_length!r}") from None
    if not 0 < size <= len(body):
        raise InputError(f"{HEADER} is {size}, but the body holds {len(body)} bytes")
    return body[:size], body[size:]


def _load(header: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(header)
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"bad JSON body (binary tensor data needs the {HEADER} header)") from None
    if not isinstance(doc, dict):
        raise InputError("the inference request must be a JSON object")
    return doc


def _binary_part(tensor: dict[str, Any], rest: bytes) -> bytes | None:
    """The input's binary data, when `binary_data_size` says it has some; all of `rest`."""
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise InputError("inputs[0].parameters must be an object")
    if "shared_memory_region" in params:
        raise InputError("shared memory is not supported: send the data in the body")
    size = params.get("binary_data_size")
    if size is None:
        if rest:
            raise InputError(
                f"{len(rest)} bytes follow the JSON header, but inputs[0] has no binary_data_size"
            )
        if "data" not in tensor:
            raise InputError("inputs[0] has neither data nor parameters.binary_data_size")
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InputError(f"inputs[0].parameters.binary_data_size must be >= 0, got {size!r}")
    if "data" in tensor:
        raise InputError("inputs[0] has both data and parameters.binary_data_size")
    if size != len(rest):
        raise InputError(
            f"inputs[0].parameters.binary_data_size is {size}, but {len(rest)} bytes follow "
            "the JSON header"
        )
    return rest


def _output(doc: dict[str, Any], datatype: str) -> Output:
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise InputError("parameters must be an object")
    binary = _flag(params, "binary_data_output", "parameters") or False
    requested = doc.get("outputs")
    if requested is None or requested == []:
        return Output(datatype, binary)
    if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
        raise InputError('outputs must be a list like [{"name": "images"}]')
    for i, out in enumerate(requested):
        if out.get("name") != TENSOR:
            raise InputError(
                f"outputs[{i}]: no output {out.get('name')!r}; the model has {TENSOR!r}"
            )
    if len(requested) > 1:
        raise InputError(f"outputs: {TENSOR!r} is asked for {len(requested)} times")
    out_params = requested[0].get("parameters") or {}
    if not isinstance(out_params, dict):
        raise InputError("outputs[0].parameters must be an object")
    for unsupported in ("classification", "shared_memory_region"):
        if unsupported in out_params:
            raise InputError(f"outputs[0].parameters.{unsupported} is not supported")
    asked = out_params.get("datatype", datatype)
    if asked not in DATATYPES:
        raise InputError(
            f"outputs[0].parameters.datatype must be BYTES, UINT8 or FP32, got {asked!r}"
        )
    own = _flag(out_params, "binary_data", "outputs[0].parameters")
    return Output(asked, binary if own is None else own)


def _flag(params: dict[str, Any], key: str, where: str) -> bool | None:
    value = params.get(key)
    if value is not None and not isinstance(value, bool):
        raise InputError(f"{where}.{key} must be true or false, got {value!r}")
    return value


def _b64(blobs: list[bytes]) -> list[str]:
    return [base64.b64encode(b).decode("ascii") for b in blobs]


def _is_shape(shape: Any) -> TypeGuard[list[int]]:
    return (
        isinstance(shape, list)
        and bool(shape)
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    )


__all__ = ["DATATYPES", "HEADER", "TENSOR", "Output", "Request", "inflate", "metadata", "parse"]
