"""Tensor data of an OIP v2 infer request to images: BYTES elements (JSON base64 strings, or
binary length-prefixed elements) to image files, UINT8 / FP32 `[N, H, W, 3]` (JSON numbers or
raw little-endian values) to float pixels in [0, 1]. Every mistake is an `InputError` naming
the field. A leaf of `model.serving.oip`.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from typing import Any

import numpy as np

from ganops.model.serving.predictor import MAX_SIDE, InputError

_DTYPES: dict[str, np.dtype[Any]] = {"UINT8": np.dtype("u1"), "FP32": np.dtype("<f4")}
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8")  # PNG, JPEG


def blobs(
    tensor: dict[str, Any], shape: list[int], raw: bytes | None, max_batch: int
) -> list[bytes]:
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise InputError(f"inputs[0].shape must be [N] (or [N, 1]) for BYTES, got {shape}")
    if raw is not None:
        blobs = [_file(b) for b in _unpack(raw)]
    else:
        blobs = _decode_b64(_strings(tensor.get("data")))
    if len(blobs) != math.prod(shape):
        raise InputError(f"inputs[0].shape {shape} does not match {len(blobs)} data elements")
    check_count(len(blobs), max_batch)
    return blobs


def pixels(
    tensor: dict[str, Any],
    datatype: str,
    shape: list[int],
    raw: bytes | None,
    max_batch: int,
    max_pixels: int,
) -> np.ndarray:
    if len(shape) != 4 or shape[3] != 3:
        raise InputError(f"inputs[0].shape must be [N, H, W, 3] for {datatype}, got {shape}")
    n, height, width = shape[:3]
    check_count(n, max_batch)
    if min(height, width) < 1 or max(height, width) > MAX_SIDE:
        raise InputError(f"image size {width}x{height} px: each side must be 1..{MAX_SIDE}", 413)
    if n * height * width > max_pixels:
        raise InputError(f"too many pixels: {n * height * width} > --max-pixels {max_pixels}", 413)
    dtype = _DTYPES[datatype]
    if raw is not None:
        if len(raw) != math.prod(shape) * dtype.itemsize:
            raise InputError(
                f"inputs[0]: {len(raw)} bytes of binary data, but shape {shape} of {datatype} "
                f"takes {math.prod(shape) * dtype.itemsize}"
            )
        values = np.frombuffer(raw, dtype=dtype).astype(np.float64)
    else:
        values = _numbers(tensor.get("data"))
    if values.size != math.prod(shape):
        raise InputError(f"inputs[0].shape {shape} does not match {values.size} data elements")
    if not np.isfinite(values).all():
        raise InputError("inputs[0].data holds NaN or infinity")
    if datatype == "UINT8":
        if raw is None and (values.min() < 0 or values.max() > 255 or (values % 1).any()):
            raise InputError("inputs[0].data: UINT8 pixels must be integers 0..255")
        values = values / 255.0
    elif values.min() < 0.0 or values.max() > 1.0:
        raise InputError(
            f"inputs[0].data: FP32 pixels must be in [0, 1], got {values.min():g}..{values.max():g}"
            " (send 0..255 as UINT8)"
        )
    return values.astype(np.float32).reshape(shape)


def _numbers(data: Any) -> np.ndarray:
    if not isinstance(data, list):
        raise InputError("inputs[0].data must be a list of numbers")
    try:
        values = np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError("inputs[0].data must be a list of numbers (nested lists alike)") from None
    return values.ravel()


def _strings(data: Any) -> list[str]:
    if isinstance(data, list) and data and all(isinstance(d, list) for d in data):
        data = [item for row in data for item in row]  # [[b64], ...] for shape [N, 1]
    if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
        raise InputError("inputs[0].data must be a list of base64 PNG/JPEG strings")
    return data


def _unpack(raw: bytes) -> list[bytes]:
    """BYTES binary data: each element a little-endian uint32 length, then its bytes."""
    items: list[bytes] = []
    at = 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise InputError("inputs[0]: BYTES binary data ends inside an element's length")
        (size,) = struct.unpack_from("<I", raw, at)
        at += 4
        if at + size > len(raw):
            raise InputError(f"inputs[0]: BYTES element {len(items)} runs past the data's end")
        items.append(raw[at : at + size])
        at += size
    return items


def _file(blob: bytes) -> bytes:
    """A binary BYTES element: the image file, or base64 of it (the same array a client sent
    as JSON, sent again as binary)."""
    if blob.startswith(_IMAGE_MAGIC):
        return blob
    try:
        return base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return blob  # decode() says what it is not


def _decode_b64(items: list[str]) -> list[bytes]:
    out = []
    for i, item in enumerate(items):
        try:
            out.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise InputError(f"inputs[0].data[{i}] is not valid base64") from None
    return out


def check_count(n: int, max_batch: int) -> None:
    if n == 0:
        raise InputError("no images in the batch")
    if n > max_batch:
        raise InputError(f"too many images: {n} > --max-batch {max_batch}", 413)


__all__ = ["blobs", "check_count", "pixels"]
