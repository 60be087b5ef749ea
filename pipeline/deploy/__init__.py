"""Deployers: roll the serving endpoint to an approved model version, and back on failure.

Three implementations of `pipeline.ports.Deployer` behind one factory:
- `KServeDeployer` (`pipeline.deploy.kserve`) creates or patches a KServe InferenceService
  (`serving.kserve.io/v1beta1`), waits for its newest revision, and restores the previous
  predictor when it fails;
- `KubernetesDeployer` (`pipeline.deploy.kubernetes`) patches the serving Deployment, waits for
  the rollout, and re-applies the previous pod template when it fails;
- `LocalDeployer` (`pipeline.deploy.local`) runs `ganops serve` as a local process on
  loopback and switches to a new one only once it is ready.

Both cluster targets run a canary beside the stable version (`set_canary`): KServe through
`canaryTrafficPercent` (`kserve_canary`), a plain Deployment through a second Deployment
with the replicas in proportion (`kube_canary`).

The implementations are imported lazily, so the bot can import this module without the
kubernetes client when no cluster is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ganops.pipeline.deploy.target import KServeTarget, KubeTarget
from ganops.pipeline.ports import Deployer, DeployError, DeployResult

__all__ = [
    "DeployError",
    "DeployResult",
    "Deployer",
    "KServeTarget",
    "KubeTarget",
    "make_deployer",
    "mlflow_locator",
]


def make_deployer(
    state_dir: Path,
    mlflow_uri: str,
    kube: KubeTarget | KServeTarget | None = None,
    *,
    server_cmd: Sequence[str] | None = None,
    serve_args: Sequence[str] = (),
    ready_timeout_s: float = 180.0,
) -> Deployer:
    """The deployer for this process: a KServe InferenceService or a Kubernetes Deployment
    when a target is given, else local.

    `server_cmd` (local only) overrides the server command; its items may hold {model_uri},
    {port} and {host}. The default runs `ganops serve --model-uri URI --port P`; `serve_args`
    (local only) are appended to it, e.g. the input-capture flags.
    """
    if isinstance(kube, KServeTarget):
        from ganops.pipeline.deploy.kserve import KServeDeployer

        return KServeDeployer(kube, locate=mlflow_locator(mlflow_uri))
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


def mlflow_locator(tracking_uri: str) -> Callable[[str], str | None]:
    """`models:/NAME/VERSION` -> where MLflow keeps that version's files (s3://…, file:…), so
    KServe's storage initializer can fetch them; None for other URIs."""

    def locate(model_uri: str) -> str | None:
        name, _, version = model_uri.removeprefix("models:/").rpartition("/")
        if not model_uri.startswith("models:/") or not name or not version.isdigit():
            return None
        import mlflow

        registry = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        return str(registry.get_model_version_download_uri(name, version))

    return locate
