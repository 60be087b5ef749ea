"""Training data too large for the device: a decoded cache on local disk, read per batch.

Under the budget (`GANOPS_DEVICE_DATA_GB`, read by the entry points and passed down) both
domains are decoded into uint8 tensors on the device, as `model.batches.load_domain` does.
Above it each domain is decoded once, by the same threads and the same function, into a
uint8 memmap under the run's folder; `Batches` then reads only each step's images from it
(a rank reads only its own sampler indices of A), so the batches are bit-identical.

The cache file is named by a key over the folder, the load size and the file list (names,
sizes, mtimes): a resumed run or another rank on the node reuses it, a changed folder makes a
new one. It is written under a temporary name and renamed, and its length is checked before
use, so a rank killed mid-write never leaves a file that is read.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganops.model.batches import MAX_DECODE_WORKERS, TrainError, _load_uint8, load_domain
from ganops.model.data import list_images

ENV = "GANOPS_DEVICE_DATA_GB"
DEFAULT_DEVICE_DATA_GB = 8.0
CACHE_SUFFIX = ".u8"


def device_data_gb(env: Mapping[str, str]) -> float:
    """The budget from `GANOPS_DEVICE_DATA_GB` (GB, >= 0; unset or empty: the default).

    Raises:
        ValueError: a one-line message when the value is not a number >= 0.
    """
    raw = env.get(ENV, "").strip()
    if not raw:
        return DEFAULT_DEVICE_DATA_GB
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{ENV} must be a number of GB >= 0, got {raw!r}")
    return value


def decoded_bytes(images: int, size: int) -> int:
    """The uint8 NCHW size of `images` RGB images at `size` px."""
    return images * 3 * size * size


@dataclass(frozen=True)
class DataPlan:
    stream: bool
    message: str


def plan(counts: tuple[int, int], size: int, budget_gb: float) -> DataPlan:
    """Stream when the two domains' decoded bytes exceed the budget; the message says why."""
    total = sum(decoded_bytes(n, size) for n in counts)
    gb = total / 1e9
    what = f"{counts[0]}+{counts[1]} images at {size} px decode to {gb:.2f} GB"
    if total > budget_gb * 1e9:
        return DataPlan(True, f"{what} > {ENV}={budget_gb:g}: streamed from a cache on disk")
    return DataPlan(False, f"{what} <= {ENV}={budget_gb:g}: held on the device")


def cache_key(folder: Path, size: int, paths: list[Path]) -> str:
    """A name for `folder`'s decoded images at `size`: it changes with the folder, the size,
    or any file's name, length or modification time."""
    h = hashlib.sha256(f"{folder.resolve()}\0{size}\0".encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def cache_path(folder: Path, size: int, cache_dir: Path) -> Path:
    paths = list_images(folder)
    if not paths:
        raise TrainError(f"no images in {folder}")
    return cache_dir / f"{folder.name}-{size}-{cache_key(folder, size, paths)}{CACHE_SUFFIX}"


def _complete(path: Path, images: int, size: int) -> bool:
    return path.is_file() and path.stat().st_size == decoded_bytes(images, size)


def write_cache(folder: Path, size: int, cache_dir: Path, workers: int | None = None) -> Path:
    """Decode `folder` once into its cache file (reused when complete); returns its path."""
    paths = list_images(folder)
    path = cache_path(folder, size, cache_dir)
    if _complete(path, len(paths), size):
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Unique per process: two writers never share a temporary file; the rename is atomic.
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    mm = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(len(paths), 3, size, size))

    def put(i: int) -> None:
        mm[i] = _load_uint8(paths[i], size).numpy()

    count = workers or min(MAX_DECODE_WORKERS, os.cpu_count() or 1)
    try:
        with ThreadPoolExecutor(max_workers=max(count, 1), thread_name_prefix="decode") as pool:
            list(pool.map(put, range(len(paths))))
        mm.flush()
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TrainError(f"cannot read {folder}: {exc} (run `ganops validate`)") from None
    os.replace(tmp, path)
    # An older cache of this folder (other files, another size) is never read again: at
    # tens of GB each, they would fill the disk run after run.
    for old in cache_dir.glob(f"{folder.name}-*{CACHE_SUFFIX}"):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def open_cache(folder: Path, size: int, cache_dir: Path) -> np.memmap:
    """`folder`'s complete cache file, read-only, as uint8 NCHW.

    Raises:
        TrainError: when it is missing or not whole (a writer killed mid-write).
    """
    images = len(list_images(folder))
    path = cache_path(folder, size, cache_dir)
    if not _complete(path, images, size):
        raise TrainError(f"the decoded cache {path} is missing or incomplete")
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(images, 3, size, size))


def wait_for_cache(
    folder: Path, size: int, cache_dir: Path, *, poll_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:  # fmt: skip
    """Until another rank has renamed `folder`'s complete cache into place. A file, not a
    barrier: decoding 100k images can outlast the process group's collective timeout, and a
    writer that fails ends the job (torchrun stops the other ranks)."""
    images = len(list_images(folder))
    path = cache_path(folder, size, cache_dir)
    while not _complete(path, images, size):
        sleep(poll_s)


def load_domains(
    data: Path,
    size: int,
    *,
    device: torch.device,
    budget_gb: float,
    cache_dir: Path,
    writer: bool,
    poll_s: float = 2.0,
) -> tuple[torch.Tensor | np.memmap, torch.Tensor | np.memmap, DataPlan]:
    """trainA and trainB on the device, or as cache memmaps when over the budget.

    `writer` (the node's first rank) decodes into the cache; the other ranks wait for its
    files (`wait_for_cache`) before opening them.
    """
    folders = (data / "trainA", data / "trainB")
    counts = (len(list_images(folders[0])), len(list_images(folders[1])))
    chosen = plan(counts, size, budget_gb)
    if not chosen.stream:
        held = [load_domain(f, size).to(device) for f in folders]
        return held[0], held[1], chosen
    for f in folders:
        if writer:
            write_cache(f, size, cache_dir)
        else:
            wait_for_cache(f, size, cache_dir, poll_s=poll_s)
    return open_cache(folders[0], size, cache_dir), open_cache(folders[1], size, cache_dir), chosen
