"""Manifests rendered as a cluster would get them: the real `kubectl kustomize` (a skip where
kubectl is not installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml


def kustomize(folder: Path) -> list[dict[str, Any]]:
    """The documents `kubectl kustomize folder` renders. Raises CalledProcessError when the
    render fails (a test may expect that)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (it ships kustomize)")
    out = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]
