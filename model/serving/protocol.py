"""Request bodies to images and back, for both protocols; no HTTP server, no event loop.

- v1: `POST /v1/stylize` with PNG/JPEG bytes, or JSON `{"images": ["<base64>", ...]}`.
- v2: the Open Inference Protocol (KServe, Triton): `POST /v2/models/{name}/infer`; the body's
  forms (BYTES, UINT8 or FP32 images; JSON or binary tensor data) are `model.serving.oip`'s.

Each `*_work` function runs on a worker thread: decode, forward, encode. Anything the client
must fix raises `InputError` with its HTTP status.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ganops.model.serving import oip
from ganops.model.serving.predictor import InputError, Predictor


@dataclass(frozen=True)
class Limits:
    max_batch: int
    max_pixels: int  # summed over the batch, checked from the headers before decoding
    max_bytes: int = 8 * 1024 * 1024  # a body, also once decompressed


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


def v2_work(
    predictor: Predictor,
    limits: Limits,
    *,
    name: str,
    body: bytes,
    header_length: str | None = None,
    encoding: str = "",
) -> Reply:
    """One OIP v2 infer body (JSON, or JSON then binary tensor data) to its reply."""
    body = oip.inflate(body, encoding, limits.max_bytes)
    request = oip.parse(
        body, header_length, max_batch=limits.max_batch, max_pixels=limits.max_pixels
    )
    if request.blobs is not None:
        images = _decode_all(predictor, limits, request.blobs, "inputs[0].data")
    else:
        assert request.pixels is not None
        images = [predictor.fit(p) for p in request.pixels]
    doc, raw = oip.reply_doc(
        name=name,
        version=predictor.version,
        request=request,
        outputs=predictor.predict(images).outputs,
        encode=predictor.encode,
    )
    header = json.dumps(doc).encode()
    if raw is None:
        return Reply(200, "application/json", header, request.count)
    headers = {oip.HEADER: str(len(header))}
    return Reply(200, "application/octet-stream", header + raw, request.count, headers)


def _run(
    predictor: Predictor, limits: Limits, blobs: list[bytes], where: str | None
) -> list[bytes]:
    """Check the pixel budget, decode, forward, encode; errors name the bad element."""
    images = _decode_all(predictor, limits, blobs, where)
    return [predictor.encode(o) for o in predictor.predict(images).outputs]


def _decode_all(
    predictor: Predictor, limits: Limits, blobs: list[bytes], where: str | None
) -> list[np.ndarray]:
    check_pixels(blobs, limits.max_pixels)
    images = []
    for i, blob in enumerate(blobs):
        try:
            images.append(predictor.decode(blob))
        except InputError as exc:
            raise InputError(f"{where}[{i}]: {exc}" if where else str(exc), exc.status) from None
    return images


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


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


__all__ = ["Limits", "Reply", "check_pixels", "v1_work", "v2_work"]
