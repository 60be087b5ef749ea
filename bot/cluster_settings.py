"""The settings of the cluster path (Kubeflow, object storage, GPU nodes), validated once.

Kept beside `bot.settings` (which holds them as `Settings.cluster`) so the Kubeflow-only
knobs read as one group. Same rules: one line naming the variable on a bad value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ganops.bot.errors import ConfigError

# kfp.Client reads the projected service-account token from here (multi-user Kubeflow).
DEFAULT_SA_TOKEN_PATH = Path("/var/run/secrets/kubeflow/pipelines/token")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_./]*)=([-A-Za-z0-9_.]*)$")
_SCHEME_URL = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


@dataclass(frozen=True)
class ClusterSettings:
    # Durable checkpoints and MLflow run ids, keyed by request: s3://…, gs://…, a PVC path.
    artifact_uri: str | None = None
    # GANOPS_ARTIFACT_PVC: a claim mounted at GANOPS_ARTIFACT_URI (then a path) in every
    # pipeline pod, so a path URI works on Kubeflow too.
    artifact_pvc: str | None = None
    checkpoint_minutes: float = 10.0
    # GANOPS_DEVICE_DATA_GB for the train step: above this many GB of decoded images the
    # trainer streams them from a cache on disk. None: the train pod's own environment decides
    # (else the trainer's default, 8), as it does for `ganops train`.
    device_data_gb: float | None = None
    # GANOPS_STEPS_IMAGE: the Dockerfile's `steps` target (no torch) for the steps that load no
    # network; None: every step pulls the trainer image.
    steps_image: str | None = None
    # Delete a request's durable folder once nothing in it changed for this many days
    # (GANOPS_CHECKPOINT_KEEP_DAYS; None: keep everything, e.g. left to a bucket lifecycle).
    checkpoint_keep_days: float | None = None
    # A Secret whose keys (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, …) become the train and
    # ingest pods' environment: object-storage credentials never pass through the bot.
    data_secret: str | None = None
    gpu_node_selector: tuple[str, str] | None = None  # ("nvidia.com/gpu.product", "…")
    kfp_namespace: str | None = None
    kfp_token_path: Path | None = None  # KF_PIPELINES_SA_TOKEN_PATH
    kfp_ui_url: str | None = None  # links in Slack; KFP_HOST is often in-cluster only
    mlflow_ui_url: str | None = None
    # GANOPS_DEPLOYER=kserve: the InferenceService (also the OIP model name clients call),
    # KServe's deployment mode, and the predictor's service account (object-storage access).
    inference_service: str = "ganops-serving"
    kserve_mode: str = "Serverless"
    kserve_service_account: str | None = None


def load_cluster_settings(env: Mapping[str, str]) -> ClusterSettings:
    """Raises: ConfigError naming the first bad setting."""
    token = _get(env, "KF_PIPELINES_SA_TOKEN_PATH")
    return ClusterSettings(
        artifact_uri=_uri(env, "GANOPS_ARTIFACT_URI"),
        artifact_pvc=_k8s_name(env, "GANOPS_ARTIFACT_PVC"),
        steps_image=_image_ref(env, "GANOPS_STEPS_IMAGE"),
        checkpoint_minutes=_minutes(env, "GANOPS_CHECKPOINT_MINUTES", 10.0),
        checkpoint_keep_days=_days(env, "GANOPS_CHECKPOINT_KEEP_DAYS"),
        device_data_gb=_gb(env, "GANOPS_DEVICE_DATA_GB"),
        data_secret=_k8s_name(env, "GANOPS_DATA_SECRET"),
        gpu_node_selector=_label(env, "GANOPS_GPU_NODE_SELECTOR"),
        kfp_namespace=_k8s_name(env, "GANOPS_KFP_NAMESPACE"),
        kfp_token_path=Path(token) if token else None,
        kfp_ui_url=_http(env, "GANOPS_KFP_UI_URL"),
        mlflow_ui_url=_http(env, "GANOPS_MLFLOW_UI_URL"),
        inference_service=_k8s_name(env, "GANOPS_INFERENCE_SERVICE") or "ganops-serving",
        kserve_mode=_kserve_mode(env),
        kserve_service_account=_k8s_name(env, "GANOPS_KSERVE_SERVICE_ACCOUNT"),
    )


def _kserve_mode(env: Mapping[str, str]) -> str:
    value = _get(env, "GANOPS_KSERVE_MODE") or "Serverless"
    modes = {"serverless": "Serverless", "rawdeployment": "RawDeployment"}
    if value.lower() not in modes:
        raise ConfigError(f"GANOPS_KSERVE_MODE={value!r} must be Serverless or RawDeployment")
    return modes[value.lower()]


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


def _uri(env: Mapping[str, str], name: str) -> str | None:
    value = _get(env, name)
    if value is None:
        return None
    if not (_SCHEME_URL.match(value) or value.startswith("/")):
        raise ConfigError(
            f"{name}={value!r} must be a URL (s3://bucket/prefix) or an absolute path"
        )
    return value.rstrip("/")


def _image_ref(env: Mapping[str, str], name: str) -> str | None:
    value = _get(env, name)
    if value is not None and (any(c.isspace() for c in value) or "://" in value):
        raise ConfigError(f"{name}={value!r} is not an image reference (repo/name:tag)")
    return value


def _minutes(env: Mapping[str, str], name: str, default: float) -> float:
    value = _in_range(env, name, 0, 10_000, "minutes (0 or more; 0: by steps only)")
    return default if value is None else value


def _gb(env: Mapping[str, str], name: str) -> float | None:
    return _in_range(env, name, 0, 1e6, "a number of GB >= 0 (0: always stream)")


def _days(env: Mapping[str, str], name: str) -> float | None:
    return _in_range(env, name, 0, 100_000, "a number of days above 0 (unset: keep all)",
                     above_low=True)  # fmt: skip


def _in_range(
    env: Mapping[str, str],
    name: str,
    low: float,
    high: float,
    what: str,
    *,
    above_low: bool = False,
) -> float | None:
    """`name` as a number in [low, high) ((low, high) with `above_low`); None when unset.
    Text, nan and inf are refused like a value out of range, with `what` it must be."""
    raw = _get(env, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan  # fails every comparison below
    if not ((low < value if above_low else low <= value) and value < high):
        raise ConfigError(f"{name}={raw!r} must be {what}")
    return value


def check_artifact_uri(cluster: ClusterSettings, *, kfp_host: str | None) -> None:
    """On Kubeflow, a path artifact URI would be each pod's own disk: checkpoints would die
    with the pod they were meant to outlive. It is accepted with GANOPS_ARTIFACT_PVC, the
    claim mounted there. Raises ConfigError otherwise, naming the setting to change."""
    uri, pvc = cluster.artifact_uri, cluster.artifact_pvc
    if pvc and not (uri and uri.startswith("/")):
        raise ConfigError(
            f"GANOPS_ARTIFACT_PVC={pvc!r} needs GANOPS_ARTIFACT_URI to be the absolute path "
            f"to mount it at (e.g. /mnt/ganops), not {uri or 'unset'}"
        )
    if kfp_host and uri and not pvc and (uri.startswith("/") or uri.startswith("file://")):
        raise ConfigError(
            f"GANOPS_ARTIFACT_URI={uri!r} is a path, but with KFP_HOST the pipeline's pods "
            "do not share this disk: set GANOPS_ARTIFACT_PVC to a claim to mount there, or use "
            "object storage (s3://bucket/prefix, gs://bucket/prefix)"
        )


def _k8s_name(env: Mapping[str, str], name: str) -> str | None:
    value = _get(env, name)
    if value is not None and not _K8S_NAME.match(value):
        raise ConfigError(f"{name}={value!r} is not a Kubernetes name (lower case, digits, -)")
    return value


def _label(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    value = _get(env, name)
    if value is None:
        return None
    match = _LABEL.match(value)
    if match is None:
        raise ConfigError(f"{name}={value!r} must be label=value (nvidia.com/gpu.product=…)")
    return match.group(1), match.group(2)


def _http(env: Mapping[str, str], name: str) -> str | None:
    value = _get(env, name)
    if value is not None and not re.match(r"^https?://\S+$", value):
        raise ConfigError(f"{name}={value!r} is not an http(s) URL")
    return value.rstrip("/") if value else None
