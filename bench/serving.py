"""Serving benchmark: `ganops serve` against a raw forward pass on the same batch. Prints JSON.

For each batch size, in alternating blocks: the raw forward pass of the generator in this
process, and the same batch through a real `ganops serve` process over HTTP (PNG body for one
image, the JSON batch otherwise) from one client on a keep-alive connection: p50/p99 latency
and requests/s. Then requests/s with several concurrent clients. The
overhead is server p50 / forward p50 - 1: decoding, encoding, HTTP (uvicorn + Starlette) and the
hand-off to a worker thread; drift features run on their own thread, off the request path.
Goal: < 10%. CPU always; GPU too when one is present.

The tiny preset (32 px) is a toy: its forward pass takes about as long as decoding and
encoding the PNGs, so the fixed per-image cost shows there; the full preset (256 px) is the
size a deployment serves. Timings on a shared machine swing with its load; the load average is
reported with them.

Run: `.venv/bin/python bench/serving.py [--quick] [--preset tiny|full|both]`.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The benchmark reuses the serving tests' helpers (bundle, images, free port), which live in
# the repository's tests/ package rather than the installed distribution.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fakes.prometheus import free_port, terminate
from tests.fakes.serving import make_bundle, png_bytes, scenes


class RawForward:
    """The bundle's generator in this process, called the way the server calls it."""

    def __init__(self, bundle: Path, device: str) -> None:
        from ganops.model.bundle import load_bundle

        self.generator = load_bundle(bundle, device=device).generator
        self.device = device

    def seconds(self, batch: np.ndarray) -> float:
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device) * 2 - 1
        started = time.perf_counter()
        with torch.inference_mode():
            self.generator(x)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - started


def request_body(batch: np.ndarray) -> tuple[bytes, str]:
    if len(batch) == 1:
        return png_bytes(batch[0]), "image/png"
    doc = {"images": [base64.b64encode(png_bytes(im)).decode() for im in batch]}
    return json.dumps(doc).encode(), "application/json"


class Client:
    """One keep-alive connection posting the same body again and again."""

    def __init__(self, port: int, batch: np.ndarray) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.body, content_type = request_body(batch)
        self.headers = {"Content-Type": content_type}

    def seconds(self) -> float:
        started = time.perf_counter()
        self.conn.request("POST", "/v1/stylize", body=self.body, headers=self.headers)
        response = self.conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"server answered {response.status}")
        return time.perf_counter() - started

    def run(self, n: int, out: list[float]) -> None:
        out.extend(self.seconds() for _ in range(n))


def compare(raw: RawForward, port: int, batch: np.ndarray, repeats: int) -> dict[str, Any]:
    """Forward passes and requests in alternating blocks, so both see the same background
    load. Blocks, not single calls: torch's worker threads spin for a while after each call,
    which would slow the other process's next call down."""
    client = Client(port, batch)
    for _ in range(3):  # warm-up
        raw.seconds(batch), client.seconds()
    forward: list[float] = []
    served: list[float] = []
    block = max(1, repeats // 4)
    for _ in range(4):
        forward += [raw.seconds(batch) for _ in range(block)]
        time.sleep(0.3)
        client.conn.close()  # the server drops keep-alive connections idle for 30 s
        served += [client.seconds() for _ in range(block)]
        time.sleep(0.3)
    return {
        "forward_p50_s": float(np.median(forward)),
        "forward_p99_s": float(np.quantile(forward, 0.99)),
        "server_p50_s": float(np.median(served)),
        "server_p99_s": float(np.quantile(served, 0.99)),
        "server_requests_per_s": 1.0 / float(np.mean(served)),
        "server_images_per_s": len(batch) / float(np.mean(served)),
        "overhead": float(np.median(served) / np.median(forward) - 1.0),
    }


def concurrent(port: int, batch: np.ndarray, repeats: int, clients: int) -> dict[str, Any]:
    times: list[float] = []
    workers = [Client(port, batch) for _ in range(clients)]
    threads = [threading.Thread(target=w.run, args=(repeats, times)) for w in workers]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "requests_per_s": clients * repeats / elapsed,
        "p50_s": float(np.median(times)),
        "p99_s": float(np.quantile(times, 0.99)),
    }


def start(bundle: Path, device: str, log: Any) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [sys.executable, "-m", "ganops.bot.cli", "serve", "--model-uri", str(bundle)]
    cmd += ["--port", str(port), "--device", device, "--max-batch", "64"]
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return process, port
        except OSError:
            pass
        time.sleep(0.2)
    terminate(process)
    raise RuntimeError("the server did not get ready")


@dataclass(frozen=True)
class Plan:
    """What to measure for one preset on one device."""

    preset: str
    size: int
    batches: tuple[int, ...]
    repeats: int
    clients: int = 4


def plans(quick: bool, presets: list[str], gpu: bool) -> list[Plan]:
    out = []
    if "tiny" in presets:
        out.append(Plan("tiny", 32, (1, 8) if quick else (1, 8, 32), 20 if quick else 100))
    if "full" in presets:
        # A full-size forward takes about a second on two CPU cores: few, small batches.
        repeats = 4 if quick else (40 if gpu else 8)
        out.append(Plan("full", 256, (1, 4) if quick or not gpu else (1, 4, 16), repeats))
    return out


def bench_device(bundle: Path, device: str, plan: Plan) -> dict[str, Any]:
    images = scenes(max(plan.batches), seed=1, image_size=plan.size)
    raw = RawForward(bundle, device)
    out: dict[str, Any] = {}
    with tempfile.TemporaryFile() as log:
        process, port = start(bundle, device, log)
        try:
            for b in plan.batches:
                out[f"batch_{b}"] = compare(raw, port, images[:b], plan.repeats)
                out[f"batch_{b}"]["concurrent"] = concurrent(
                    port, images[:b], max(2, plan.repeats // 4), plan.clients
                )
        finally:
            terminate(process)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--preset", default="both", choices=["tiny", "full", "both"])
    args = parser.parse_args(argv)
    gpu = torch.cuda.is_available()
    devices = ["cpu"] + (["cuda"] if gpu else [])
    presets = ["tiny", "full"] if args.preset == "both" else [args.preset]
    result: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            # 1, 5 and 15 min, before and after: the figures mean little on a busy machine.
            "load_average_start": list(os.getloadavg()),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if gpu else None,
        },
    }
    goals = {}
    with tempfile.TemporaryDirectory() as tmp:
        for plan in plans(args.quick, presets, gpu):
            bundle = make_bundle(Path(tmp) / plan.preset, preset_name=plan.preset)
            for device in devices:
                key = f"{plan.preset}_{plan.size}px_{device}"
                result[key] = {"repeats": plan.repeats, **bench_device(bundle, device, plan)}
                largest = result[key][f"batch_{max(plan.batches)}"]["overhead"]
                goals[f"{key}_largest_batch_overhead_lt_10pct"] = largest < 0.1
    result["goals"] = goals
    result["machine"]["load_average_end"] = list(os.getloadavg())
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
