"""A path GANOPS_ARTIFACT_URI on Kubeflow: the claim GANOPS_ARTIFACT_PVC is mounted there in
every task of the compiled pipeline (kfp-kubernetes' `mount_pvc`), and a multi-node run, whose
TrainJob nodes would not see it, is refused before anything is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ganops.pipeline.ct_pipeline import compile_pipeline
from ganops.pipeline.placement import Placement

pytestmark = pytest.mark.slow  # compiles the pipeline

IMAGE = "reg/ganops-trainer:1"


def _executors(tmp_path: Path, placement: Placement) -> tuple[dict[str, Any], dict[str, Any]]:
    spec, *platform = yaml.safe_load_all(
        compile_pipeline(tmp_path / "ct.yaml", IMAGE, placement).read_text()
    )
    k8s = platform[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if platform else {}
    return spec["deploymentSpec"]["executors"], k8s


def test_every_task_mounts_the_claim_at_the_artifact_path(tmp_path: Path) -> None:
    executors, k8s = _executors(tmp_path, Placement(artifact_pvc=("ganops-ckpt", "/mnt/ganops")))
    assert set(k8s) == set(executors)  # the train task and every light one
    for name, config in k8s.items():
        [mount] = config["pvcMount"]
        assert mount["mountPath"] == "/mnt/ganops", name
        claim = mount.get("constant") or mount["pvcNameParameter"]["runtimeValue"]["constant"]
        assert claim == "ganops-ckpt", name


def test_no_claim_no_mount(tmp_path: Path) -> None:
    _, k8s = _executors(tmp_path, Placement(gpus=0))
    assert not any("pvcMount" in config for config in k8s.values())


def test_a_multi_node_run_on_a_mounted_path_is_refused_before_kfp_is_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ganops.pipeline.launch.kubeflow import KubeflowLauncher
    from ganops.pipeline.ports import InvalidParamsError, RunParams

    monkeypatch.setenv("HOME", str(tmp_path))
    # Port 9 on loopback: nothing is sent there, as the refusal comes first.
    launcher = KubeflowLauncher(tmp_path / "state", "http://127.0.0.1:9", "", IMAGE,
                                artifact_uri="/mnt/ganops")  # fmt: skip
    with pytest.raises(InvalidParamsError, match="nodes=2 needs GANOPS_ARTIFACT_URI in object"):
        launcher.launch(RunParams(gpus=8, nodes=2), "req-1")
