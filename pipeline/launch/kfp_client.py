"""How the Kubeflow launcher reaches KFP: host, UI links, and multi-user Kubeflow access.

A multi-user Kubeflow install refuses a client without a profile namespace and an identity.
Inside a cluster the identity is the pod's projected service-account token, the file that
`kfp.Client` reads through `ServiceAccountTokenVolumeCredentials` (audience
`pipelines.kubeflow.org`, path `KF_PIPELINES_SA_TOKEN_PATH`, by default
/var/run/secrets/kubeflow/pipelines/token); the token rotates, so the file is read per call.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TOKEN_PATH = Path("/var/run/secrets/kubeflow/pipelines/token")


@dataclass(frozen=True)
class KfpAccess:
    namespace: str | None = None  # GANOPS_KFP_NAMESPACE: the team's profile namespace
    token_path: Path | None = None  # KF_PIPELINES_SA_TOKEN_PATH; None: the default, if present
    credentials: Any = None  # any kfp TokenCredentialsBase, given instead of a token file

    def token_file(self) -> Path | None:
        if self.token_path is not None:
            return self.token_path
        return DEFAULT_TOKEN_PATH if DEFAULT_TOKEN_PATH.is_file() else None


def make_kfp_client(host: str, ui_host: str, access: KfpAccess) -> Any:
    """`kfp.Client` for `host`, authenticated as `access` says."""
    import kfp
    from kfp.client import ServiceAccountTokenVolumeCredentials

    credentials = access.credentials
    token = access.token_file()
    if credentials is None and token is not None:
        credentials = ServiceAccountTokenVolumeCredentials(path=str(token))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP >= 2.0.0b2"
        return kfp.Client(host=host, ui_host=ui_host, credentials=credentials)
