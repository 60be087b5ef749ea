"""Request bodies to images and back, for both protocols; no HTTP server, no event loop.

- v1: `POST /v1/stylize` with PNG/JPEG bytes, or JSON `{"images": ["<base64>", ...]}`.
- v2: the Open Inference Protocol (KServe, Triton): `POST /v2/models/{name}/infer` with one
  `BYTES` input whose elements are base64 PNG/JPEG, answered with one `BYTES` output alike.

Each `*_work` function runs on a worker thread: decode, forward, encode. Anything the client
must fix raises `InputError` with its HTTP status.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

from ganops.model.serving.predictor import InputError, Predictor

OIP_INPUT = "images"  # the tensor name in the model metadata, for input and output alike


@dataclass(frozen=True)
class Limits:
    max_batch: int
    max_pixels: int  # summed over the batch, checked from the headers before decoding


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    batch: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, "application/json", _error(message), headers=headers or {})


def json_reply(status: int, doc: dict[str, Any], batch: int | None = None) -> Reply:
    return Reply(status, "application/json", json.dumps(doc).encode(), batch)


def v1_work(predictor: Predictor, limits: Limits, content_type: str, body: bytes) -> Reply:
    """One /v1/stylize body to its reply."""
    if not body:
        raise InputError('empty body: send PNG/JPEG bytes or JSON {"images": [...]}')
    if content_type.split(";")[0].strip().lower() == "application/json":
        blobs = _v1_images(body, limits.max_batch)
        encoded = _b64(_run(predictor, limits, blobs, "images"))
        return json_reply(200, {"images": encoded}, len(blobs))
    outputs = _run(predictor, limits, [body], None)
    return Reply(200, "image/png", outputs[0], 1)


def v2_work(predictor: Predictor, limits: Limits, name: str, body: bytes) -> Reply:
    """One OIP v2 infer body to its reply."""
    request_id, blobs = _v2_images(body, limits.max_batch)
    encoded = _b64(_run(predictor, limits, blobs, "inputs[0].data"))
    doc: dict[str, Any] = {
        "model_name": name,
        "model_version": predictor.version,
        "outputs": [
            {"name": OIP_INPUT, "datatype": "BYTES", "shape": [len(encoded)], "data": encoded}
        ],
    }
    if request_id is not None:
        doc["id"] = request_id
    return json_reply(200, doc, len(blobs))


def v2_metadata(predictor: Predictor, name: str) -> dict[str, Any]:
    tensor = {"name": OIP_INPUT, "datatype": "BYTES", "shape": [-1]}
    return {
        "name": name,
        "versions": [predictor.version],
        "platform": "pytorch",
        "inputs": [tensor],
        "outputs": [tensor],
        "parameters": {"image_size": predictor.image_size, "content_type": "base64 PNG/JPEG"},
    }


def _run(
    predictor: Predictor, limits: Limits, blobs: list[bytes], where: str | None
) -> list[bytes]:
    """Check the pixel budget, decode, forward, encode; errors name the bad element."""
    check_pixels(blobs, limits.max_pixels)
    images = []
    for i, blob in enumerate(blobs):
        try:
            images.append(predictor.decode(blob))
        except InputError as exc:
            raise InputError(f"{where}[{i}]: {exc}" if where else str(exc), exc.status) from None
    return [predictor.encode(o) for o in predictor.predict(images).outputs]


def check_pixels(blobs: list[bytes], max_pixels: int) -> None:
    """Refuse a batch whose images hold more than `max_pixels` in all, from their headers
    alone: the per-side limit bounds one image, this bounds what one request may decode."""
    total = 0
    for blob in blobs:
        try:
            with Image.open(io.BytesIO(blob)) as image:
                total += image.size[0] * image.size[1]
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            continue  # decode() says what is wrong with it
    if total > max_pixels:
        raise InputError(f"too many pixels: {total} > --max-pixels {max_pixels}", 413)


def _b64(blobs: list[bytes]) -> list[str]:
    return [base64.b64encode(b).decode("ascii") for b in blobs]


def _decode_b64(items: list[str], where: str) -> list[bytes]:
    out = []
    for i, item in enumerate(items):
        try:
            out.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise InputError(f"{where}[{i}] is not valid base64") from None
    return out


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InputError("bad JSON body") from None


def _check_count(n: int, max_batch: int) -> None:
    if n == 0:
        raise InputError("no images in the batch")
    if n > max_batch:
        raise InputError(f"too many images: {n} > --max-batch {max_batch}", 413)


def _v1_images(body: bytes, max_batch: int) -> list[bytes]:
    doc = _load_json(body)
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise InputError('expected JSON {"images": ["<base64 PNG/JPEG>", ...]}')
    _check_count(len(images), max_batch)
    try:
        return [base64.b64decode(i, validate=True) for i in images]
    except (binascii.Error, ValueError):
        raise InputError("an image is not valid base64") from None


def _v2_images(body: bytes, max_batch: int) -> tuple[str | None, list[bytes]]:
    if not body:
        raise InputError("empty body: send an inference request (JSON)")
    doc = _load_json(body)
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InputError('expected {"inputs": [{"name": "images", "datatype": "BYTES", ...}]}')
    tensor = inputs[0]
    if tensor.get("datatype") != "BYTES":
        raise InputError(f"inputs[0].datatype must be BYTES, got {tensor.get('datatype')!r}")
    data, shape = tensor.get("data"), tensor.get("shape")
    if isinstance(data, list) and data and all(isinstance(d, list) for d in data):
        data = [item for row in data for item in row]  # [[b64], ...] for shape [N, 1]
    if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
        raise InputError("inputs[0].data must be a list of base64 PNG/JPEG strings")
    if not _valid_shape(shape, len(data)):
        raise InputError(f"inputs[0].shape {shape!r} does not match {len(data)} data elements")
    _check_count(len(data), max_batch)
    request_id = doc.get("id")
    return (str(request_id) if request_id is not None else None), _decode_b64(
        data, "inputs[0].data"
    )


def _valid_shape(shape: Any, n: int) -> bool:
    if not isinstance(shape, list) or not shape:
        return False
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return False
    return math.prod(shape) == n


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


__all__ = ["Limits", "Reply", "check_pixels", "v1_work", "v2_metadata", "v2_work"]
