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


@dataclass(frozen=True)
class KServeTarget:
    """The KServe InferenceService the bot rolls (`serving.kserve.io/v1beta1`).

    `name` is also the model name the server answers to (`ganops serve --model-name`): KServe
    routes `/v2/models/<name>/infer` by it. `image` may hold "{version}". `mode` is KServe's
    deployment mode: Serverless (Knative revisions, traffic splitting) or RawDeployment.
    `mlflow_uri` is the tracking server as the predictor pods reach it (for `models:/` URIs).
    """

    namespace: str
    name: str
    image: str
    mlflow_uri: str | None = None
    mode: str = "Serverless"
    service_account: str | None = None
    min_replicas: int = 1
    kubeconfig: str | None = None
    in_cluster: bool = False
    progress_deadline_s: float = 600.0
    poll_s: float = 2.0
