"""The compiled-pipeline cache: one YAML per image, placement and ganops version."""

from __future__ import annotations

from pathlib import Path

import pytest

import ganops
from ganops.pipeline.launch.kubeflow import KubeflowLauncher


@pytest.mark.slow  # two pipeline compiles: ~8 s
def test_an_upgraded_ganops_compiles_its_own_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launcher = KubeflowLauncher(tmp_path, "http://127.0.0.1:9", "", "reg/ganops-trainer:1")
    monkeypatch.setattr(ganops, "__version__", "1.0.0")
    old = launcher.package(0)
    assert launcher.package(0) == old  # cached
    monkeypatch.setattr(ganops, "__version__", "1.1.0")
    new = launcher.package(0)
    assert new != old
    assert new.is_file()
    assert old.is_file()
