"""Data loading: images/s decoded (`model.batches.load_domain`, one thread against the default
pool) and images/s fed to the step (`Batches.get`: the index, the crop and the flip, on the
device the images live on; and streamed from the decoded cache on disk, as above
GANOPS_DEVICE_DATA_GB), at 1k and 20k images.

The images are written once as JPEG at `--source` px (photos, not the synthetic set's flat
shapes, decode at a realistic cost) and decoded to `--size` with `load_scale` 1.12 as the
full preset does. On a GPU the fed rate is measured there; the decode is CPU work either way.
Prints one JSON object. Usage: bench/data_loading.py [--counts 1000,20000] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganops.model.batches import Batches, Images, load_domain, load_size
from ganops.model.config import TrainConfig, preset
from ganops.model.data_cache import open_cache, write_cache


def write_images(folder: Path, count: int, source: int, seed: int) -> None:
    """`count` smooth random JPEGs (low-frequency noise, so they compress like photos)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (source // 16, source // 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((source, source), Image.Resampling.BICUBIC)
        image.save(folder / f"{i:06d}.jpg", quality=90)


def decode_rate(folder: Path, size: int, workers: int | None) -> tuple[float, torch.Tensor]:
    began = time.perf_counter()
    images = load_domain(folder, size, workers=workers)
    return len(images) / (time.perf_counter() - began), images


def feed_rate(a: Images, b: Images, size: int, steps: int, device: torch.device) -> float:
    cfg = TrainConfig(net=preset("full", "cut", image_size=size), batch_size=8, steps=steps)
    batches = Batches(a, b, cfg, rank=0, world=1, device=device)
    batches.get(0)  # the first epoch's order
    began = time.perf_counter()
    for step in range(1, steps + 1):
        batches.get(step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.batch_size / (time.perf_counter() - began)


def measure(
    root: Path, count: int, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    folder = root / f"n{count}"
    began = time.perf_counter()
    write_images(folder, count, args.source, seed=count)
    written = time.perf_counter() - began
    stored = load_size(args.size, 1.12)
    serial, one = decode_rate(folder, stored, workers=1)
    pooled, images = decode_rate(folder, stored, workers=None)
    assert torch.equal(one, images), "threads changed the decoded tensor"
    on_device = images.to(device)
    fed = feed_rate(on_device, on_device, args.size, args.steps, device)
    # The streamed path: the same images from the decoded cache on disk, a batch at a time.
    write_cache(folder, stored, root / "cache")
    cache = open_cache(folder, stored, root / "cache")
    streamed = feed_rate(cache, cache, args.size, args.steps, device)
    return {
        "images": count,
        "write_s": round(written, 1),
        "decoded_per_s_1_thread": round(serial, 1),
        "decoded_per_s_pool": round(pooled, 1),
        "decode_speedup": round(pooled / serial, 2),
        "fed_per_s": round(fed, 1),
        "fed_per_s_streamed": round(streamed, 1),
        "bytes_on_device": int(images.numel()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="1000,20000", help="comma-separated image counts")
    parser.add_argument("--size", type=int, default=128, help="training size (px)")
    parser.add_argument("--source", type=int, default=256, help="stored JPEG size (px)")
    parser.add_argument("--steps", type=int, default=200, help="batches fed per measurement")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(Path(tmp), int(n), args, device) for n in args.counts.split(",")]
    print(json.dumps({
        "bench": "data_loading",
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "device": str(device),
        "size": args.size,
        "source": args.source,
        "results": rows,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
