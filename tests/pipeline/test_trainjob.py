"""The multi-node TrainJob through the real kubernetes client against kmock over HTTP.

kmock stores the object; the fixture's small controller plays Kubeflow Trainer: it marks a
job Complete, or Failed with a message when its image names a broken build.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
from kubernetes import client

from ganops.model import storage
from ganops.pipeline.steps.trainjob import (
    RUNTIME,
    NodePods,
    TrainJobError,
    read_result,
    run_trainjob,
    trainjob_manifest,
    trainjob_name,
)
from tests.fakes.kmock_loop import close_emulator, open_emulator, serve_kmock

NS = "team-a"
PODS = NodePods(
    data_secret="s3-credentials",
    secret_keys=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
    node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    shm_size="16Gi",
)
OWNER = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": "ct-x7",
         "uid": "5f0c-11"}  # fmt: skip
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
                if obj.deleted:  # kmock keeps deleted objects' history
                    continue
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
        pods=PODS,
        owner=OWNER,
    )


@pytest.mark.slow
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
    assert spec["trainer"]["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": "8"}}
    assert spec["trainer"]["numProcPerNode"] == 8  # one process per GPU, never "auto"
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
                   durable_dir=durable, checkpoint_minutes=5.0, device_data_gb=0.5)  # fmt: skip
    seen: dict[str, Any] = {}

    def rank0(obj: dict[str, Any]) -> None:  # what torchrun's rank 0 does on a node
        seen["spec"] = obj["spec"]
        node = trainjob.node_job(obj["spec"]["trainer"]["command"][-1], 0)
        seen["data"] = (Path(node.data_dir) / "trainA" / "a.png").read_bytes()
        seen["settings"] = (node.checkpoint_minutes, node.device_data_gb)  # the bot's, not env
        bundle = Path(node.out_dir) / "bundle"
        bundle.mkdir(parents=True)
        (bundle / "generator.pt").write_bytes(b"weights")
        Path(node.loss_curve_path).write_bytes(b"png")
        trainjob.upload_outputs(node, {"mlflow_run_id": "run-7", "steps": 40})

    trainer.on_job = rank0
    result = trainjob.train_on_nodes(job, nodes=2, gpus=8, image="reg/t:1", api=_api(trainer),
                                     owner={}, poll_s=0.05)  # fmt: skip
    assert result == {"mlflow_run_id": "run-7", "steps": 40}
    assert seen["data"] == b"an image"
    assert seen["settings"] == (5.0, 0.5)
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
        LocalLauncher(tmp_path, "").launch(RunParams(nodes=2, gpus=1), "req")


def test_the_trainjob_reads_as_the_trainer_apis_own_models() -> None:
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    job = TrainerV1alpha1TrainJob.from_dict(_manifest("registry/ganops-trainer:1"))
    assert job is not None
    assert job.spec is not None
    trainer = job.spec.trainer
    assert trainer is not None
    assert (trainer.num_nodes, trainer.num_proc_per_node) == (2, 8)
    assert job.metadata is not None
    [owner] = job.metadata.owner_references or []
    assert (owner.kind, owner.name, owner.uid) == ("Workflow", "ct-x7", "5f0c-11")
    # v2.3's pod overrides: runtimePatches -> the runtime's "node" job and container.
    [patch] = job.spec.runtime_patches or []
    assert patch.training_runtime_spec is not None
    template = patch.training_runtime_spec.template
    assert template is not None
    assert template.spec is not None
    [node] = template.spec.replicated_jobs or []
    assert node.name == "node"
    assert node.template is not None
    assert node.template.spec is not None
    assert node.template.spec.template is not None
    pod = node.template.spec.template.spec
    assert pod is not None
    assert pod.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert [t.key for t in pod.tolerations or []] == ["nvidia.com/gpu"]
    [shm] = pod.volumes or []
    assert shm.empty_dir is not None
    assert shm.empty_dir.medium == "Memory"
    [container] = pod.containers or []
    assert container.name == "node"
    assert [m.mount_path for m in container.volume_mounts or []] == ["/dev/shm"]
    env = {e.name: e for e in container.env or []}
    assert env["AWS_ENDPOINT_URL"].value == "http://minio:9000"
    ref = env["AWS_SECRET_ACCESS_KEY"].value_from
    assert ref is not None
    assert ref.secret_key_ref is not None
    assert (ref.secret_key_ref.name, ref.secret_key_ref.optional) == ("s3-credentials", True)


def test_a_misspelled_or_mistyped_field_fails_before_the_cluster_sees_it() -> None:
    from ganops.pipeline.steps.trainjob_spec import TrainJobSpecError, validated

    good = _manifest("registry/ganops-trainer:1")
    assert validated(good) == good
    typo = {**good, "spec": {**good["spec"], "trainer": {**good["spec"]["trainer"],
                                                          "numProcsPerNode": 8}}}  # fmt: skip
    with pytest.raises(TrainJobSpecError, match=r"does not know: spec\.trainer\.numProcsPerNode"):
        validated(typo)
    patches = good["spec"]["runtimePatches"]
    misplaced = {**good, "spec": {**good["spec"], "runtimePatches": [
        {**patches[0], "podTemplateOverrides": [{"targetJobs": [{"name": "node"}]}]}]}}  # fmt: skip
    with pytest.raises(TrainJobSpecError, match=r"runtimePatches\[0\]\.podTemplateOverrides"):
        validated(misplaced)
    wrong = {**good, "spec": {**good["spec"], "trainer": {**good["spec"]["trainer"],
                                                           "numNodes": "2"}}}  # fmt: skip
    with pytest.raises(TrainJobSpecError, match="rejects"):
        validated(wrong)


def test_several_nodes_without_gpus_are_refused_and_one_cpu_node_runs_one_process() -> None:
    from ganops.bot.parsing import parse_retrain
    from ganops.model.errors import UsageError
    from ganops.pipeline.steps.trainjob_spec import TrainJobSpecError

    with pytest.raises(TrainJobSpecError, match="nodes=2 needs gpus=1 or more per node"):
        trainjob_manifest(name="x", namespace=NS, image="i", nodes=2, gpus_per_node=0,
                          command=["torchrun"])  # fmt: skip
    with pytest.raises(UsageError, match="nodes=3 needs gpus=1 or more per node"):
        parse_retrain("nodes=3")
    one = trainjob_manifest(name="x", namespace=NS, image="i", nodes=1, gpus_per_node=0,
                            command=["torchrun"])  # fmt: skip
    assert one["spec"]["trainer"]["numProcPerNode"] == 1
    assert "resourcesPerNode" not in one["spec"]["trainer"]


def test_a_failed_job_found_on_retry_is_deleted_and_created_anew(
    trainer: Trainer, capsys: pytest.CaptureFixture[str]
) -> None:
    api = _api(trainer)
    with pytest.raises(TrainJobError, match="failed"):
        run_trainjob(api, _manifest("registry/broken:1"), poll_s=0.05, timeout_s=10)
    # The retried step (a fixed image, the same request): not "failed" again at once.
    job = run_trainjob(api, _manifest("registry/ganops-trainer:2"), poll_s=0.05, timeout_s=10)
    assert job["status"]["conditions"][0]["type"] == "Complete"
    assert job["spec"]["trainer"]["image"] == "registry/ganops-trainer:2"
    assert "had failed (trainer node 1: exit code 137 (OOMKilled)); deleting it" in (
        capsys.readouterr().out
    )


def test_a_stopped_step_deletes_its_trainjob(trainer: Trainer) -> None:
    import os
    import signal

    from ganops.pipeline.steps import trainjob

    api = _api(trainer)
    manifest = _manifest("registry/ganops-trainer:1")
    with pytest.raises(SystemExit), trainjob._deleted_when_stopped(api, namespace=NS,
                                                                     name=manifest["metadata"]["name"]):  # fmt: skip
        api.create_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", NS, "trainjobs",
                                            manifest)  # fmt: skip
        os.kill(os.getpid(), signal.SIGTERM)  # KFP terminates the run (or its timeout)
        time.sleep(5)  # the handler raises in this thread long before
    with pytest.raises(client.exceptions.ApiException) as gone:
        api.get_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", NS, "trainjobs",
                                         manifest["metadata"]["name"])  # fmt: skip
    assert gone.value.status == 404


@pytest.mark.slow
def test_cancel_deletes_the_runs_trainjob_and_the_waiting_pod_asks_no_gpu(
    trainer: Trainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ganops.pipeline.launch.kfp_client import KfpAccess
    from ganops.pipeline.launch.kubeflow import KubeflowLauncher
    from ganops.pipeline.ports import RunParams
    from ganops.pipeline.steps.durable import durable_dir
    from tests.fakes.kfp import serve_fake_kfp

    monkeypatch.setenv("HOME", str(tmp_path))
    api = _api(trainer)
    artifacts = "s3://bucket/ganops"
    with serve_fake_kfp() as (host, fake):
        launcher = KubeflowLauncher(
            tmp_path / "state", host, "", "reg/ganops-trainer:1", artifact_uri=artifacts,
            access=KfpAccess(namespace=NS), trainjob_api=lambda: api,
        )  # fmt: skip
        run = launcher.launch(RunParams(gpus=8, nodes=2), "req-7")
        [submitted] = fake.runs.values()
        sent = submitted["pipeline_spec"]  # the bare spec when no Kubernetes settings apply
        spec = sent.get("pipeline_spec", sent)
        train = spec["deploymentSpec"]["executors"]["exec-train"]
        assert "accelerator" not in train["container"].get("resources", {})
        name = trainjob_name(durable_dir(artifact_uri=artifacts, request_id="req-7"))
        manifest = trainjob_manifest(name=name, namespace=NS, image="i", nodes=2,
                                     gpus_per_node=8, command=["torchrun"])  # fmt: skip
        api.create_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", NS, "trainjobs",
                                            manifest)  # fmt: skip
        launcher.cancel(run.run_id)
        assert launcher.status(run.run_id).state == "cancelled"
    with pytest.raises(client.exceptions.ApiException) as gone:
        api.get_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", NS, "trainjobs", name)
    assert gone.value.status == 404


def test_the_trainjob_is_owned_by_the_workflow_that_owns_the_step_pod(trainer: Trainer) -> None:
    from ganops.pipeline.steps.trainjob import workflow_owner

    cfg = client.Configuration()
    cfg.host = trainer.url
    core = client.CoreV1Api(client.ApiClient(cfg))
    owner = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": "ct-x7",
             "uid": "5f0c-11", "controller": True}  # fmt: skip
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "ct-x7-train-1", "namespace": NS, "ownerReferences": [owner]},
           "spec": {"containers": [{"name": "main", "image": "reg/t:1"}]}}  # fmt: skip
    core.create_namespaced_pod(NS, pod)
    found = workflow_owner(core, namespace=NS, pod="ct-x7-train-1")
    assert found == OWNER
    assert workflow_owner(core, namespace=NS, pod="no-such-pod") is None
    job = trainjob_manifest(name="x", namespace=NS, image="i", nodes=2, gpus_per_node=1,
                            command=["torchrun"], owner=found)  # fmt: skip
    assert job["metadata"]["ownerReferences"] == [{**OWNER, "controller": False}]
