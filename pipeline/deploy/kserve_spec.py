"""The InferenceService the KServe deployer sends, built from the `kserve` package's models, and
how far its rollout has got, read from its status. Pure: no API calls.

The predictor is a custom container: the ganops trainer image running
`ganops serve --model-name <service name>`, so KServe's `/v2/models/<name>/...` routes reach
it. The model comes either from KServe's storage initializer (`STORAGE_URI`: the MLflow
artifact of the version, when it lives where KServe can fetch it, e.g. s3:// or gs://), or
from MLflow itself (`GANOPS_MODEL_URI=models:/ganops-<model>/<version>`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kserve import (
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1PredictorSpec,
)
from kubernetes.client import (
    V1Container,
    V1ContainerPort,
    V1EnvVar,
    V1HTTPGetAction,
    V1ObjectMeta,
    V1Probe,
)

from ganops.pipeline.deploy.target import KServeTarget

API_VERSION = "serving.kserve.io/v1beta1"
CONTAINER = "kserve-container"  # the name KServe gives a custom predictor's container
MOUNT = "/mnt/models"  # where KServe's storage initializer puts STORAGE_URI's files
PORT = 8080
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
ANN_MODEL = "ganops.io/model"
ANN_VERSION = "ganops.io/model-version"
ANN_PREVIOUS = "ganops.io/previous-version"
ANN_URI = "ganops.io/model-uri"
# Schemes KServe's storage initializer downloads; anything else is loaded through MLflow.
STORAGE_SCHEMES = ("s3://", "gs://", "pvc://", "https://", "hdfs://", "webhdfs://", "oci://")

Obj = dict[str, Any]
# The env a deploy sets on our container; whatever else the manifest gave it stays.
_OUR_ENV = frozenset(
    {"GANOPS_MODEL_URI", "GANOPS_MODEL_VERSION", "STORAGE_URI", "MLFLOW_TRACKING_URI"}
)


def inference_service(
    target: KServeTarget,
    *,
    model: str,
    version: str,
    model_uri: str,
    storage_uri: str | None = None,
    annotations: dict[str, str] | None = None,
    canary_percent: int | None = None,
) -> V1beta1InferenceService:
    """The whole InferenceService serving `version`. `annotations` are kept (ours replaced);
    `canary_percent` is KServe's `canaryTrafficPercent` (Serverless only): what a canary
    step sets, with the previous revision taking the rest."""
    meta = {
        **(annotations or {}),
        MODE_ANNOTATION: target.mode,
        ANN_MODEL: model,
        ANN_VERSION: version,
        ANN_URI: model_uri,
    }
    return V1beta1InferenceService(
        api_version=API_VERSION,
        kind="InferenceService",
        metadata=V1ObjectMeta(
            name=target.name,
            namespace=target.namespace,
            annotations=meta,
            labels={"app.kubernetes.io/part-of": "ganops"},
        ),
        spec=V1beta1InferenceServiceSpec(
            predictor=predictor_spec(
                target,
                version=version,
                model_uri=model_uri,
                storage_uri=storage_uri,
                canary_percent=canary_percent,
            )
        ),
    )


def predictor_spec(
    target: KServeTarget,
    *,
    version: str,
    model_uri: str,
    storage_uri: str | None = None,
    canary_percent: int | None = None,
) -> V1beta1PredictorSpec:
    env = [V1EnvVar(name="GANOPS_MODEL_VERSION", value=version)]
    if storage_uri is not None:
        # The registered model's artifact: the bundle files are its extra_files.
        env += [
            V1EnvVar(name="STORAGE_URI", value=storage_uri),
            V1EnvVar(name="GANOPS_MODEL_URI", value=f"{MOUNT}/extra_files"),
        ]
    else:
        env.append(V1EnvVar(name="GANOPS_MODEL_URI", value=model_uri))
        if target.mlflow_uri:
            env.append(V1EnvVar(name="MLFLOW_TRACKING_URI", value=target.mlflow_uri))
    ready = V1Probe(
        http_get=V1HTTPGetAction(path=f"/v2/models/{target.name}/ready", port=PORT),
        period_seconds=5,
        failure_threshold=3,
    )
    container = V1Container(
        name=CONTAINER,
        image=target.image.format(version=version),
        args=["serve", "--model-name", target.name, "--host", "0.0.0.0", "--port", str(PORT)],
        env=env,
        ports=[V1ContainerPort(container_port=PORT, protocol="TCP")],
        readiness_probe=ready,
    )
    return V1beta1PredictorSpec(
        containers=[container],
        min_replicas=target.min_replicas,
        service_account_name=target.service_account,
        canary_traffic_percent=canary_percent,
        annotations={ANN_VERSION: version},
    )


def merge_predictor(old: Obj, new: Obj) -> Obj:
    """`old` with our container's image, arguments and model env from `new`, its version
    annotation, and `new`'s canary percent; everything else in `old` is kept."""
    merged = copy.deepcopy(old)
    merged["annotations"] = {**(old.get("annotations") or {}), **(new.get("annotations") or {})}
    if new.get("canaryTrafficPercent") is None:
        merged.pop("canaryTrafficPercent", None)
    else:
        merged["canaryTrafficPercent"] = new["canaryTrafficPercent"]
    ours = new["containers"][0]
    containers = merged.get("containers") or []
    for i, container in enumerate(containers):
        if container.get("name") == CONTAINER:
            env = [e for e in container.get("env") or [] if e.get("name") not in _OUR_ENV]
            containers[i] = {
                **container,
                "image": ours["image"],
                "args": ours["args"],
                "env": [*env, *ours["env"]],
            }
            break
    else:
        containers.append(ours)
    merged["containers"] = containers
    return merged


def storage_uri_for(location: str | None) -> str | None:
    """The artifact location KServe's storage initializer can fetch, or None."""
    if location and location.startswith(STORAGE_SCHEMES):
        return location
    return None


@dataclass(frozen=True)
class Rollout:
    done: bool
    failure: str | None  # why it can no longer succeed
    summary: str


# Conditions that say the newest revision will not come up (Knative's reasons).
_FAILED = ("RevisionFailed", "RevisionMissing", "ContainerMissing", "ProgressDeadlineExceeded")


def rollout_state(isvc: Obj, generation: int) -> Rollout:
    """Where the rollout of `generation` stands: observed, the newest revision ready and
    serving (Serverless: latest ready == latest created), or failed."""
    status = isvc.get("status") or {}
    if int(status.get("observedGeneration") or 0) < generation:
        return Rollout(False, None, f"waiting for KServe to see generation {generation}")
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    for kind in ("LatestDeploymentReady", "PredictorConfigurationReady", "PredictorReady", "Ready"):
        cond = conditions.get(kind) or {}
        if cond.get("status") == "False" and cond.get("reason") in _FAILED:
            return Rollout(False, f"{kind}: {cond.get('reason')}: {cond.get('message', '')}", "")
    predictor = (status.get("components") or {}).get("predictor") or {}
    created = predictor.get("latestCreatedRevision")
    ready_rev = predictor.get("latestReadyRevision")
    if created and ready_rev != created:
        return Rollout(False, None, f"revision {created} not ready yet")
    ready = (conditions.get("Ready") or {}).get("status") == "True"
    return Rollout(ready, None, "ready" if ready else "InferenceService not Ready yet")


__all__ = [
    "Rollout",
    "inference_service",
    "merge_predictor",
    "predictor_spec",
    "rollout_state",
    "storage_uri_for",
]
