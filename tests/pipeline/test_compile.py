"""The compiled pipeline YAML: every step, GPU placement on train, the gate as a condition."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from ganops.pipeline.cli import main
from ganops.pipeline.ct_pipeline import compile_pipeline
from ganops.pipeline.placement import Placement
from ganops.pipeline.ports import PIPELINE_STEPS

pytestmark = pytest.mark.slow  # compiles the pipeline

IMAGE = "registry.example/ganops-trainer:9.9"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    path = compile_pipeline(tmp_path_factory.mktemp("yaml") / "ct_pipeline.yaml", IMAGE)
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform


def _all_tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    return tasks


def test_every_step_is_a_task_on_our_image(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    spec, _ = compiled
    tasks = _all_tasks(spec)
    for step in [s for s in PIPELINE_STEPS if s != "gate"] + ["gate-pass", "gate-reject"]:
        assert step in tasks, step
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {IMAGE}
    # kfp comes with ganops in the image: no task installs packages at start-up.
    assert not any("pip install" in " ".join(e["container"]["command"]) for e in executors.values())


def test_train_asks_for_gpus_and_tolerates_gpu_taints(
    compiled: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    spec, platform = compiled
    resources = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "pipelinechannel--gpus" in resources["accelerator"]["resourceCount"]
    assert float(resources["cpuRequest"]) >= 1
    assert resources["memoryRequest"] > 1
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in k8s[
        "tolerations"
    ]
    assert _all_tasks(spec)["train"]["retryPolicy"]["maxRetryCount"] >= 1


def test_the_gate_is_a_condition_on_the_deploy_score(
    compiled: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    spec, _ = compiled
    conditions = [
        t["triggerPolicy"]["condition"]
        for t in _all_tasks(spec).values()
        if t.get("triggerPolicy", {}).get("condition")
    ]
    assert len(conditions) == 2  # dsl.If and its dsl.Else
    passed = next(c for c in conditions if not c.startswith("!"))
    assert "evaluate-deploy_score" in passed
    assert "evaluate-gate_bar" in passed
    assert any(c.startswith("!(") for c in conditions)


def test_an_exit_handler_records_the_final_state(
    compiled: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    spec, _ = compiled
    finalize = spec["root"]["dag"]["tasks"]["finalize"]
    assert finalize["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert "taskFinalStatus" in finalize["inputs"]["parameters"]["status"]


def test_cli_compile_writes_the_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "ct.yaml"
    assert main(["compile", "-o", str(out), "--image", "my/image:1"]) == 0
    spec = next(yaml.safe_load_all(out.read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"my/image:1"}
    assert str(out) in capsys.readouterr().out


def test_retrain_with_a_gpu_trains_the_full_presets_published_recipe(
    compiled: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """`/retrain gpus=1` -> the run's arguments -> the compiled train task -> its TrainConfig."""
    import torch

    from ganops.bot.parsing import parse_retrain
    from ganops.model.cli.train import _train_parser
    from ganops.model.cli.train_run import train_config as cli_config
    from ganops.model.config import TRAIN_PRESETS, preset
    from ganops.pipeline.params import params_from_arguments, pipeline_arguments
    from ganops.pipeline.steps.train import train_config

    spec, _ = compiled
    arguments = pipeline_arguments(parse_retrain("gpus=1"), "sqlite:///x.db")
    inputs = _all_tasks(spec)["train"]["inputs"]["parameters"]
    # What the train task receives: each input bound to a pipeline parameter, by name (inside
    # the exit handler's sub-DAG the binding is the channel `pipelinechannel--<parameter>`).
    task_args = {
        name: arguments[binding["componentInputParameter"].removeprefix("pipelinechannel--")]
        for name, binding in inputs.items()
        if "componentInputParameter" in binding
    }
    for unset in ("epochs", "lr", "batch_size"):
        assert not task_args[unset], unset  # unset travels as 0: the preset decides
    assert task_args["preset"] == "full"  # resolved when the request is validated
    params = params_from_arguments(
        **{("model" if k == "model_name" else k): v for k, v in task_args.items()}
    )
    cfg = train_config(params)
    full = TRAIN_PRESETS["full"]
    # CUT's upstream schedule: 200 epochs at the lr, 200 decaying (docs/recipe.md).
    assert (cfg.batch_size, cfg.epochs, cfg.lr) == (full["batch_size"], 400, full["lr"])
    assert cfg.net == preset("full", "cut")  # the papers' sizes, CUT's antialiasing
    assert (cfg.net.image_size, cfg.net.ngf, cfg.net.n_blocks) == (256, 64, 9)
    # The CLI on a CUDA device (auto preset) trains the very same thing.
    args = _train_parser().parse_args(["--synthetic"])
    assert cli_config(args, torch.device("cuda")) == cfg


def test_explicit_values_win_over_the_preset() -> None:
    from ganops.pipeline.params import params_from_strings
    from ganops.pipeline.steps.train import train_config

    cfg = train_config(params_from_strings({"gpus": "1", "epochs": "3", "lr": "1e-3"}))
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.steps) == (3, 1e-3, 1, None)
    tiny = train_config(params_from_strings({"steps": "40"}))
    assert (tiny.net.image_size, tiny.steps, tiny.lr) == (32, 40, 5e-4)


def _compile_for(tmp_path: Path, placement: Placement) -> tuple[dict[str, Any], dict[str, Any]]:
    # With no Kubernetes extras at all, KFP writes no platform document.
    spec, *platform = yaml.safe_load_all(
        compile_pipeline(tmp_path / "ct.yaml", IMAGE, placement).read_text()
    )
    if not platform:
        return spec, {}
    return spec, platform[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


SELECTOR = ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3")


def test_a_run_on_gpus_gets_its_count_shm_node_selector_and_the_data_secret(
    tmp_path: Path,
) -> None:
    placement = Placement(gpus=2, gpu_node_selector=SELECTOR, data_secret="ganops-data")
    spec, k8s = _compile_for(tmp_path, placement)
    resources = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceCount"] == "2"
    train = k8s["exec-train"]
    assert train["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    [shm] = train["emptyDirMounts"]
    assert (shm["mountPath"], shm["medium"]) == ("/dev/shm", "Memory")
    assert train["nodeSelector"]["labels"] == dict([SELECTOR])
    for executor in ("exec-ingest", "exec-train", "exec-register"):
        [secret] = k8s[executor]["secretAsEnv"]
        assert (secret["secretName"], secret["optional"]) == ("ganops-data", True)
        envs = {e["envVar"] for e in secret["keyToEnv"]}
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"} <= envs
    # A multi-node run's TrainJob nodes get the same placement, compiled in for the step.
    from ganops.pipeline.steps.trainjob_spec import NodePods

    train_task = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]["train"]
    pods = NodePods.from_json(
        train_task["inputs"]["parameters"]["node_pods"]["runtimeValue"]["constant"]
    )
    assert pods.node_selector == dict([SELECTOR])
    assert (pods.data_secret, pods.shm_size) == ("ganops-data", "16Gi")
    assert "AWS_SECRET_ACCESS_KEY" in pods.secret_keys
    assert pods.tolerations == ({"key": "nvidia.com/gpu", "operator": "Exists",
                                 "effect": "NoSchedule"},)  # fmt: skip


def test_a_cpu_run_gets_no_gpu_toleration_volume_or_selector(tmp_path: Path) -> None:
    spec, k8s = _compile_for(tmp_path, Placement(gpus=0, gpu_node_selector=SELECTOR))
    resources = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert "accelerator" not in resources
    train = k8s.get("exec-train", {})
    assert not {"tolerations", "emptyDirMounts", "nodeSelector", "secretAsEnv"} & set(train)


def test_the_uploadable_yaml_follows_the_gpus_parameter_with_shm(
    compiled: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, platform = compiled
    train = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert [m["mountPath"] for m in train["emptyDirMounts"]] == ["/dev/shm"]


REPO = Path(__file__).resolve().parents[2]


def test_retries_cover_preemption_in_the_ir_and_the_argo_defaults(
    compiled: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    spec, _ = compiled
    policy = _all_tasks(spec)["train"]["retryPolicy"]
    assert policy == {
        "maxRetryCount": 2,
        "backoffDuration": "30s",
        "backoffFactor": 2.0,
        "backoffMaxDuration": "3600s",
    }
    # kfp 2.17.3 compiles no retryPolicy (Argo then reads OnFailure, which skips preempted
    # pods): the controller-wide default in the shipped patch supplies Always, with a limit.
    from kfp.dsl import PipelineTask

    assert "policy" not in inspect.signature(PipelineTask.set_retry).parameters, (
        "this kfp has set_retry(policy=...) (kubeflow/pipelines#13386): pass policy='Always'"
    )
    patch = yaml.safe_load((REPO / "manifests/kubeflow/argo-retry-patch.yaml").read_text())
    defaults = yaml.safe_load(patch["data"]["workflowDefaults"])
    strategy = defaults["spec"]["templateDefaults"]["retryStrategy"]
    assert strategy["retryPolicy"] == "Always"
    assert int(strategy["limit"]) >= 1  # without a limit Argo retries forever
    assert strategy["backoff"]["duration"] == "30s"


def test_the_device_data_budget_reaches_the_train_task_and_unset_travels_as_negative(
    compiled: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """GANOPS_DEVICE_DATA_GB: the launcher's storage -> the run's arguments -> the train task."""
    from ganops.pipeline.params import RunStorage, pipeline_arguments
    from ganops.pipeline.ports import RunParams

    spec, _ = compiled
    binding = _all_tasks(spec)["train"]["inputs"]["parameters"]["device_data_gb"]
    parameter = binding["componentInputParameter"].removeprefix("pipelinechannel--")
    assert parameter == "device_data_gb"
    # A run from the KFP UI that leaves it alone: negative, so the pod's env decides.
    assert spec["root"]["inputDefinitions"]["parameters"][parameter]["defaultValue"] < 0
    for gb, sent in [(0.0, 0.0), (12.5, 12.5), (None, -1.0)]:
        args = pipeline_arguments(RunParams(), "", storage=RunStorage(device_data_gb=gb))
        assert args[parameter] == sent
