"""Where the Kubernetes deployer rolls: the serving Deployment and how to reach it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KubeTarget:
    """The serving Deployment the bot rolls.

    `image` is optional: a template such as "registry/ganops-trainer:{version}" sets the
    container image as well as the model-URI env var. `kubeconfig` None with `in_cluster`
    False means the default kubeconfig (~/.kube/config or $KUBECONFIG, read by the client).
    """

    namespace: str
    deployment: str
    container: str
    model_uri_env: str = "GANOPS_MODEL_URI"
    kubeconfig: str | None = None
    in_cluster: bool = False
    progress_deadline_s: float = 600.0
    poll_s: float = 2.0
    image: str | None = None
