"""The multi-node path: `torchrun --nnodes=2`, two CPU processes on gloo, meeting through a
c10d rendezvous on loopback (as the nodes of a Kubeflow Trainer TrainJob meet), each with
its own folder. The ranks end with identical weights, and a second run resumes from the
durable checkpoint on both nodes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganops.model.data import make_synthetic

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BATCH_STATS = {"running_mean", "running_var", "num_batches_tracked"}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _two_nodes(data: Path, out: Path, durable: str, steps: int) -> None:
    port = _port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GLOO_SOCKET_IFNAME": "lo",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
        "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id=ganops-{port}",
        "--max-restarts=0", "-m", "tests.model.multinode_worker", "--data", str(data),
        "--out", str(out), "--durable", durable, "--steps", str(steps),
    ]  # fmt: skip
    nodes = [subprocess.Popen(cmd, cwd=ROOT, env=env) for _ in range(2)]
    codes = [node.wait(timeout=600) for node in nodes]
    assert codes == [0, 0]


def _assert_ranks_equal(out: Path) -> None:
    a, b = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2))
    for name, net in a["nets"].items():
        for key, value in net.items():
            if key.rsplit(".", 1)[-1] not in BATCH_STATS:
                assert torch.equal(value, b["nets"][name][key]), f"{name}.{key} differs"


def test_two_nodes_stay_in_sync_and_resume_from_the_durable_checkpoint(tmp_path: Path) -> None:
    data = make_synthetic(tmp_path / "data", n_train=16, n_test=4, image_size=32)
    durable = str(tmp_path / "bucket" / "req" / "last.pt")
    _two_nodes(data, tmp_path / "first", durable, steps=4)
    _assert_ranks_equal(tmp_path / "first")
    metas = [json.loads((tmp_path / "first" / f"rank{r}.json").read_text()) for r in range(2)]
    assert metas == [{"resumed_from": 0, "world": 2}] * 2

    # New folders for every node, as retried pods get: both read the durable step-4 state.
    _two_nodes(data, tmp_path / "second", durable, steps=6)
    _assert_ranks_equal(tmp_path / "second")
    metas = [json.loads((tmp_path / "second" / f"rank{r}.json").read_text()) for r in range(2)]
    assert metas == [{"resumed_from": 4, "world": 2}] * 2
