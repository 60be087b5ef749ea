"""The multi-node TrainJob through the real kubernetes client against kmock over HTTP.

kmock stores the object; the fixture's small controller plays Kubeflow Trainer: it marks a
job Complete, or Failed with a message when its image names a broken build.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
from kubernetes import client

from ganops.model import storage
from ganops.pipeline.steps.trainjob import (
    RUNTIME,
    TrainJobError,
    read_result,
    run_trainjob,
    trainjob_manifest,
    trainjob_name,
)
from tests.fakes.kmock_loop import close_emulator, open_emulator, serve_kmock

NS = "team-a"
TRAINJOBS = kmock.resource("trainer.kubeflow.org/v1alpha1/trainjobs")


class Trainer:
    """kmock on its own loop, with a controller that finishes every TrainJob."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self.on_job: Callable[[dict[str, Any]], None] = lambda job: None  # the nodes' work

    async def start(self) -> None:
        self.handler, self.server, self.url = await open_emulator()
        self.task = asyncio.get_running_loop().create_task(self._control())

    async def stop(self) -> None:
        self.task.cancel()
        await close_emulator(self.handler, self.server)

    async def _control(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            for key in list(self.handler.objects):
                obj = self.handler.objects[key]
                job = obj.raw
                if job.get("kind") != "TrainJob" or job.get("status"):
                    continue
                broken = "broken" in job["spec"]["trainer"]["image"]
                if not broken:
                    self.on_job(job)
                cond = {"type": "Failed" if broken else "Complete", "status": "True",
                        "message": "trainer node 1: exit code 137 (OOMKilled)" if broken else ""}  # fmt: skip
                obj["status"] = {"conditions": [cond]}


@pytest.fixture
def trainer() -> Iterator[Trainer]:
    with serve_kmock(Trainer()) as fake:
        yield fake


def _api(trainer: Trainer) -> client.CustomObjectsApi:
    cfg = client.Configuration()
    cfg.host = trainer.url
    return client.CustomObjectsApi(client.ApiClient(cfg))


def _manifest(image: str) -> dict[str, Any]:
    return trainjob_manifest(
        name=trainjob_name("req-1"),
        namespace=NS,
        image=image,
        nodes=2,
        gpus_per_node=8,
        command=["torchrun", "-m", "ganops.pipeline.steps.train", "--job", "s3://b/req-1/job.json"],
        env={"AWS_ENDPOINT_URL": "http://minio:9000"},
    )


def test_a_trainjob_is_created_followed_to_success_and_its_result_read(
    trainer: Trainer, tmp_path: Path
) -> None:
    api = _api(trainer)
    job = run_trainjob(api, _manifest("registry/ganops-trainer:1"), poll_s=0.05, timeout_s=10)
    assert job["status"]["conditions"][0]["type"] == "Complete"
    stored = api.get_namespaced_custom_object(
        "trainer.kubeflow.org", "v1alpha1", NS, "trainjobs", trainjob_name("req-1")
    )
    spec = stored["spec"]
    assert spec["runtimeRef"]["name"] == RUNTIME
    assert spec["trainer"]["numNodes"] == 2
    assert spec["trainer"]["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": 8}}
    # A retried step re-attaches to the same job rather than failing on "already exists".
    again = run_trainjob(api, _manifest("registry/ganops-trainer:1"), poll_s=0.05, timeout_s=10)
    assert again["metadata"]["name"] == trainjob_name("req-1")

    durable = str(tmp_path / "bucket" / "req-1")
    with pytest.raises(TrainJobError, match=r"no train_result\.json"):
        read_result(durable)
    storage.write_text(f"{durable}/train_result.json", '{"steps": 40}', scratch=tmp_path / "s")
    assert read_result(durable) == {"steps": 40}


def test_a_failed_trainjob_reports_its_message(trainer: Trainer) -> None:
    with pytest.raises(TrainJobError, match="failed: trainer node 1: exit code 137"):
        run_trainjob(_api(trainer), _manifest("registry/broken:2"), poll_s=0.05, timeout_s=10)


def test_names_are_valid_and_stable_per_request() -> None:
    name = trainjob_name("T1/C1/U1/trigger")
    assert name == trainjob_name("T1/C1/U1/trigger") != trainjob_name("other")
    assert len(name) <= 63
    assert name.replace("-", "").isalnum()


def test_train_on_nodes_hands_over_the_data_and_job_and_brings_the_bundle_back(
    trainer: Trainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ganops.pipeline.ports import RunParams
    from ganops.pipeline.steps import trainjob
    from ganops.pipeline.steps.job import TrainJob

    monkeypatch.setattr(trainjob, "_namespace", lambda: NS)
    monkeypatch.setattr(trainjob, "NODE_DIR", str(tmp_path / "node"))
    data = tmp_path / "dataset"
    (data / "trainA").mkdir(parents=True)
    (data / "trainA" / "a.png").write_bytes(b"an image")
    durable = str(tmp_path / "bucket" / "req-9")
    job = TrainJob(RunParams(nodes=2, gpus=8).as_dict(), str(data), str(tmp_path / "model"),
                   str(tmp_path / "curve" / "loss_curve.png"), "", "events", {},
                   durable_dir=durable)  # fmt: skip
    seen: dict[str, Any] = {}

    def rank0(obj: dict[str, Any]) -> None:  # what torchrun's rank 0 does on a node
        seen["spec"] = obj["spec"]
        node = trainjob.node_job(obj["spec"]["trainer"]["command"][-1], 0)
        seen["data"] = (Path(node.data_dir) / "trainA" / "a.png").read_bytes()
        bundle = Path(node.out_dir) / "bundle"
        bundle.mkdir(parents=True)
        (bundle / "generator.pt").write_bytes(b"weights")
        Path(node.loss_curve_path).write_bytes(b"png")
        trainjob.upload_outputs(node, {"mlflow_run_id": "run-7", "steps": 40})

    trainer.on_job = rank0
    result = trainjob.train_on_nodes(job, nodes=2, gpus=8, image="reg/t:1", api=_api(trainer),
                                     poll_s=0.05)  # fmt: skip
    assert result == {"mlflow_run_id": "run-7", "steps": 40}
    assert seen["data"] == b"an image"
    command = seen["spec"]["trainer"]["command"]
    assert command[:3] == ["torchrun", "-m", "ganops.pipeline.steps.train"]
    assert seen["spec"]["trainer"]["numNodes"] == 2
    assert (tmp_path / "model" / "bundle" / "generator.pt").read_bytes() == b"weights"
    assert (tmp_path / "curve" / "loss_curve.png").read_bytes() == b"png"


def test_several_nodes_need_durable_storage(tmp_path: Path) -> None:
    from ganops.pipeline.steps.job import TrainJob
    from ganops.pipeline.steps.trainjob import train_on_nodes

    job = TrainJob({}, str(tmp_path), str(tmp_path / "m"), str(tmp_path / "c"), "", "", {})
    with pytest.raises(TrainJobError, match="GANOPS_ARTIFACT_URI"):
        train_on_nodes(job, nodes=2, gpus=0, image="i")


def test_nodes_is_a_validated_retrain_key_and_local_runs_refuse_it(tmp_path: Path) -> None:
    from ganops.bot.parsing import parse_retrain
    from ganops.model.errors import UsageError
    from ganops.pipeline.launch.local import LocalLauncher
    from ganops.pipeline.params import pipeline_arguments
    from ganops.pipeline.ports import InvalidParamsError, RunParams

    params = parse_retrain("gpus=8 nodes=4")
    assert (params.gpus, params.nodes) == (8, 4)
    assert pipeline_arguments(params, "")["nodes"] == 4
    with pytest.raises(UsageError, match="nodes=0 is out of range"):
        parse_retrain("nodes=0")
    with pytest.raises(InvalidParamsError, match="KFP_HOST"):
        LocalLauncher(tmp_path, "").launch(RunParams(nodes=2), "req")
