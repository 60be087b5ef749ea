"""Deployers: roll the serving endpoint to an approved model version, and back on failure.

Two implementations of `pipeline.ports.Deployer` behind one factory:
- `KubernetesDeployer` (`pipeline.deploy.kubernetes`) patches the serving Deployment, waits for
  the rollout, and re-applies the previous pod template when it fails;
- `LocalDeployer` (`pipeline.deploy.local`) runs `ganops serve` as a local process on
  loopback and switches to a new one only once it is ready.

The implementations are imported lazily, so the bot can import this module without the
kubernetes client when no cluster is configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ganops.pipeline.deploy.target import KubeTarget
from ganops.pipeline.ports import Deployer, DeployError, DeployResult

__all__ = ["DeployError", "DeployResult", "Deployer", "KubeTarget", "make_deployer"]


def make_deployer(
    state_dir: Path,
    mlflow_uri: str,
    kube: KubeTarget | None = None,
    *,
    server_cmd: Sequence[str] | None = None,
    serve_args: Sequence[str] = (),
    ready_timeout_s: float = 180.0,
) -> Deployer:
    """The deployer for this process: Kubernetes when a target is given, else local.

    `server_cmd` (local only) overrides the server command; its items may hold {model_uri},
    {port} and {host}. The default runs `ganops serve --model-uri URI --port P`; `serve_args`
    (local only) are appended to it, e.g. the input-capture flags.
    """
    if kube is not None:
        from ganops.pipeline.deploy.kubernetes import KubernetesDeployer

        return KubernetesDeployer(kube)
    from ganops.pipeline.deploy.local import LocalDeployer

    return LocalDeployer(
        state_dir,
        mlflow_uri,
        server_cmd=server_cmd,
        serve_args=serve_args,
        ready_timeout_s=ready_timeout_s,
    )
