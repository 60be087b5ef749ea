"""Launchers: the CT pipeline on Kubeflow (`kubeflow`) or on this machine (`local`, `worker`).

`make_launcher` picks one: Kubeflow when KFP_HOST is set, else the local kfp.local runner.
The Kubeflow launcher is imported only when asked for, so the bot loads no kfp client without
a cluster. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

from ganops.pipeline.launch.local import LocalLauncher
from ganops.pipeline.launch.runstore import RunRow, RunStore, row_to_status
from ganops.pipeline.ports import PipelineLauncher

__all__ = ["LocalLauncher", "RunRow", "RunStore", "make_launcher", "row_to_status"]


def make_launcher(
    state_dir: Path,
    kfp_host: str | None,
    mlflow_uri: str,
    image: str,
    **options: object,
) -> PipelineLauncher:
    """Kubeflow when `kfp_host` is set, else the local runner. `options` go to the class."""
    if kfp_host:
        from ganops.pipeline.launch.kubeflow import KubeflowLauncher

        return KubeflowLauncher(state_dir, kfp_host, mlflow_uri, image, **options)  # type: ignore[arg-type]
    return LocalLauncher(state_dir, mlflow_uri, image, **options)  # type: ignore[arg-type]
