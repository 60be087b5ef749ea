"""The cluster settings (Kubeflow, object storage, GPU nodes) and what the launcher gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganops.bot.cluster_settings import ClusterSettings
from ganops.bot.errors import ConfigError
from ganops.bot.services import _launcher_options
from ganops.bot.settings import load_settings
from ganops.pipeline.placement import Placement

CLUSTER = {
    "KFP_HOST": "http://ml-pipeline.kubeflow.svc.cluster.local:8888",
    "GANOPS_ARTIFACT_URI": "s3://ganops/ckpt/",
    "GANOPS_CHECKPOINT_MINUTES": "5",
    "GANOPS_DATA_SECRET": "ganops-data",
    "GANOPS_DEVICE_DATA_GB": "0.5",
    "GANOPS_GPU_NODE_SELECTOR": "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3",
    "GANOPS_KFP_NAMESPACE": "team-a",
    "KF_PIPELINES_SA_TOKEN_PATH": "/var/run/secrets/kubeflow/pipelines/token",
    "GANOPS_KFP_UI_URL": "https://kubeflow.example.com/pipeline/",
    "GANOPS_MLFLOW_UI_URL": "https://mlflow.example.com",
}


def test_every_cluster_setting_is_read_and_reaches_the_launcher(tmp_path: Path) -> None:
    settings = load_settings({**CLUSTER, "GANOPS_STATE_DIR": str(tmp_path)})
    assert settings.cluster == ClusterSettings(
        artifact_uri="s3://ganops/ckpt",
        checkpoint_minutes=5.0,
        data_secret="ganops-data",
        device_data_gb=0.5,
        gpu_node_selector=("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
        kfp_namespace="team-a",
        kfp_token_path=Path("/var/run/secrets/kubeflow/pipelines/token"),
        kfp_ui_url="https://kubeflow.example.com/pipeline",
        mlflow_ui_url="https://mlflow.example.com",
    )
    options = _launcher_options(settings)
    assert options["artifact_uri"] == "s3://ganops/ckpt"
    assert options["checkpoint_minutes"] == 5.0
    assert options["device_data_gb"] == 0.5
    placement = options["placement"]
    assert isinstance(placement, Placement)
    assert placement.data_secret == "ganops-data"
    assert placement.gpu_node_selector == ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3")


def test_defaults_keep_checkpoints_every_ten_minutes(tmp_path: Path) -> None:
    cluster = load_settings({"GANOPS_STATE_DIR": str(tmp_path)}).cluster
    assert cluster == ClusterSettings()
    assert cluster.checkpoint_minutes == 10.0
    # Unset, the train pod's own GANOPS_DEVICE_DATA_GB decides: the launcher gets nothing.
    assert cluster.device_data_gb is None
    options = _launcher_options(load_settings({"GANOPS_STATE_DIR": str(tmp_path)}))
    assert "device_data_gb" not in options


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GANOPS_ARTIFACT_URI", "relative/path"),
        ("GANOPS_CHECKPOINT_MINUTES", "soon"),
        ("GANOPS_CHECKPOINT_MINUTES", "-1"),
        ("GANOPS_DATA_SECRET", "Not_A_Name"),
        ("GANOPS_GPU_NODE_SELECTOR", "H100"),
        ("GANOPS_KFP_NAMESPACE", "team a"),
        ("GANOPS_KFP_UI_URL", "kubeflow.example.com"),
        ("GANOPS_CHECKPOINT_KEEP_DAYS", "0"),
        ("GANOPS_CHECKPOINT_KEEP_DAYS", "a month"),
        ("GANOPS_DEVICE_DATA_GB", "lots"),
        ("GANOPS_DEVICE_DATA_GB", "-1"),
        ("GANOPS_DEVICE_DATA_GB", "nan"),
        ("GANOPS_DEVICE_DATA_GB", "inf"),
    ],
)
def test_a_bad_value_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_a_bad_device_data_budget_is_one_line_naming_it() -> None:
    with pytest.raises(ConfigError) as e:
        load_settings({"GANOPS_DEVICE_DATA_GB": "8GB"})
    assert (
        str(e.value) == "GANOPS_DEVICE_DATA_GB='8GB' must be a number of GB >= 0 (0: always stream)"
    )


@pytest.mark.parametrize(("raw", "gb"), [("0", 0.0), (" 12.5 ", 12.5), ("", None)])
def test_a_device_data_budget_is_gb_and_zero_always_streams(
    raw: str, gb: float | None, tmp_path: Path
) -> None:
    env = {"GANOPS_STATE_DIR": str(tmp_path), "GANOPS_DEVICE_DATA_GB": raw}
    assert load_settings(env).cluster.device_data_gb == gb


def test_checkpoint_retention_is_days_and_off_by_default(tmp_path: Path) -> None:
    env = {"GANOPS_STATE_DIR": str(tmp_path), "GANOPS_CHECKPOINT_KEEP_DAYS": "14"}
    assert load_settings(env).cluster.checkpoint_keep_days == 14.0
    assert load_settings({"GANOPS_STATE_DIR": str(tmp_path)}).cluster.checkpoint_keep_days is None


@pytest.mark.parametrize("uri", ["/mnt/ganops", "file:///mnt/ganops"])
def test_a_path_artifact_uri_is_refused_on_kubeflow_only(uri: str, tmp_path: Path) -> None:
    env = {"GANOPS_STATE_DIR": str(tmp_path), "GANOPS_ARTIFACT_URI": uri}
    assert load_settings(env).cluster.artifact_uri == uri  # local runs: this machine's disk
    with pytest.raises(ConfigError, match="is a path, but with KFP_HOST the pipeline's pods") as e:
        load_settings({**env, "KFP_HOST": "http://ml-pipeline.kubeflow:8888"})
    assert "set GANOPS_ARTIFACT_PVC" in str(e.value)  # the way to keep the path


def test_a_path_artifact_uri_with_a_claim_is_mounted_on_kubeflow(tmp_path: Path) -> None:
    env = {
        "GANOPS_STATE_DIR": str(tmp_path),
        "KFP_HOST": "http://ml-pipeline.kubeflow:8888",
        "GANOPS_ARTIFACT_URI": "/mnt/ganops/",
        "GANOPS_ARTIFACT_PVC": "ganops-ckpt",
    }
    settings = load_settings(env)
    assert (settings.cluster.artifact_uri, settings.cluster.artifact_pvc) == (
        "/mnt/ganops",
        "ganops-ckpt",
    )
    placement = _launcher_options(settings)["placement"]
    assert isinstance(placement, Placement)
    assert placement.artifact_pvc == ("ganops-ckpt", "/mnt/ganops")


@pytest.mark.parametrize("uri", ["s3://ganops/ckpt", "file:///mnt/ganops", ""])
def test_a_claim_needs_a_path_to_mount_at(uri: str, tmp_path: Path) -> None:
    env = {"GANOPS_STATE_DIR": str(tmp_path), "GANOPS_ARTIFACT_URI": uri,
           "GANOPS_ARTIFACT_PVC": "ganops-ckpt"}  # fmt: skip
    with pytest.raises(
        ConfigError, match="GANOPS_ARTIFACT_PVC='ganops-ckpt' needs GANOPS_ARTIFACT_URI"
    ):
        load_settings(env)


def test_a_claim_is_a_kubernetes_name(tmp_path: Path) -> None:
    env = {"GANOPS_STATE_DIR": str(tmp_path), "GANOPS_ARTIFACT_URI": "/mnt/g",
           "GANOPS_ARTIFACT_PVC": "Not_A_Name"}  # fmt: skip
    with pytest.raises(ConfigError, match="GANOPS_ARTIFACT_PVC='Not_A_Name' is not a Kubernetes"):
        load_settings(env)


def test_a_steps_image_reaches_the_placement(tmp_path: Path) -> None:
    env = {"GANOPS_STATE_DIR": str(tmp_path), "GANOPS_STEPS_IMAGE": "reg/ganops-steps:1",
           "KFP_HOST": "http://ml-pipeline.kubeflow:8888"}  # fmt: skip
    placement = _launcher_options(load_settings(env))["placement"]
    assert isinstance(placement, Placement)
    assert placement.steps_image == "reg/ganops-steps:1"
    assert load_settings({"GANOPS_STATE_DIR": str(tmp_path)}).cluster.steps_image is None
    with pytest.raises(ConfigError, match="GANOPS_STEPS_IMAGE='reg/a b' is not an image"):
        load_settings({**env, "GANOPS_STEPS_IMAGE": "reg/a b"})
