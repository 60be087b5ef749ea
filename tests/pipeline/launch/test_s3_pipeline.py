"""Pipeline runs against a real S3 protocol server (moto's, on loopback).

The data comes from `s3://…` through fsspec/s3fs in the ingest step, and the checkpoints go
to `GANOPS_ARTIFACT_URI=s3://…`. The endpoint reaches every step the way it reaches pods on
a cluster: the AWS SDKs' own `AWS_ENDPOINT_URL` and key variables in the environment.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ganops.pipeline.launch.local import LocalLauncher
from ganops.pipeline.ports import RunParams, RunStatus

pytestmark = pytest.mark.slow

IMAGE = "ganops-trainer:test"
DATA, CKPT = "ganops-data", "ganops-ckpt"
ARTIFACTS = f"s3://{CKPT}/runs"
TIMEOUT_S = 480


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """moto's S3 server with a good and a corrupt data set; yields an s3fs filesystem."""
    from moto.server import ThreadedMotoServer

    from ganops.model.data import make_synthetic

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir(DATA)
        fs.mkdir(CKPT)
        root = tmp_path_factory.mktemp("s3data")
        good = make_synthetic(root / "set", n_train=16, n_test=4, image_size=32)
        bad = make_synthetic(root / "bad", n_train=8, n_test=2, image_size=32)
        (bad / "trainA" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
        fs.put(f"{good}/", f"{DATA}/set/", recursive=True)
        fs.put(f"{bad}/", f"{DATA}/bad/", recursive=True)
        yield fs
    server.stop()


@pytest.fixture(scope="module")
def runs(
    s3: Any, tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path
) -> dict[str, Any]:
    state = tmp_path_factory.mktemp("state")
    shutil.copyfile(mlflow_template, state / "mlflow.db")  # empty, already migrated
    uri = f"sqlite:///{state / 'mlflow.db'}"
    # The bucket is allowed (GANOPS_DATA_ALLOW): the ingest step checks it again and reads it.
    launcher = LocalLauncher(
        state, uri, IMAGE, artifact_uri=ARTIFACTS, data_allow=(f"s3://{DATA}/",)
    )
    good = launcher.launch(
        RunParams(data=f"s3://{DATA}/set", steps=6, batch_size=2, image_size=32), "s3-good"
    )
    bad = launcher.launch(RunParams(model="cyclegan", data=f"s3://{DATA}/bad"), "s3-bad")
    deadline = time.monotonic() + TIMEOUT_S
    done: dict[str, RunStatus] = {}
    while len(done) < 2 and time.monotonic() < deadline:
        for name, run in (("good", good), ("bad", bad)):
            st = launcher.status(run.run_id)
            if st.final:
                done[name] = st
        time.sleep(1)
    assert len(done) == 2, f"runs not final after {TIMEOUT_S}s"
    return {"mlflow": uri, **done}


def test_s3_data_trains_registers_and_records_its_snapshot(runs: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    st = runs["good"]
    assert st.state in {"awaiting_approval", "gated"}, (st.state, st.error)
    assert st.result is not None
    assert st.result.version
    client = MlflowClient(runs["mlflow"])
    [data_input] = client.get_run(st.result.mlflow_run_id).inputs.dataset_inputs
    dataset = data_input.dataset
    assert json.loads(dataset.source)["uri"] == f"s3://{DATA}/set"
    assert dataset.source_type == "s3"
    profile = json.loads(dataset.profile)
    assert profile["digest"] == st.result.data_digest
    assert profile["num_files"] == 16 * 2 + 4 * 3  # trainA/B, testA/B and testB_gt


def test_checkpoints_and_the_mlflow_run_id_land_under_the_artifact_uri(
    runs: dict[str, Any], s3: Any
) -> None:
    from ganops.model.checkpoint import load_checkpoint

    key = f"{CKPT}/runs/s3-good"
    local = Path(s3.ls(f"{key}/checkpoints")[0]).name
    assert local == "last.pt"  # and no temporary key left behind
    with s3.open(f"{key}/checkpoints/last.pt", "rb") as handle:
        data = handle.read()
    path = Path(runs["mlflow"].removeprefix("sqlite:///")).with_name("got.pt")
    path.write_bytes(data)
    assert load_checkpoint(path)["step"] == 6
    run_file = json.loads(s3.cat(f"{key}/mlflow_run.json"))
    assert run_file["run_id"] == runs["good"].result.mlflow_run_id


def test_a_corrupt_file_on_s3_is_named_and_nothing_trains(runs: dict[str, Any], s3: Any) -> None:
    st = runs["bad"]
    assert (st.state, st.failed_step) == ("failed", "validate")
    assert st.error is not None
    assert "trainA/broken.png" in st.error
    assert not s3.exists(f"{CKPT}/runs/s3-bad")
