"""The one error mapper both cluster deployers use, on the kubernetes client's own exceptions."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import NewConnectionError

from ganops.pipeline.deploy.kube_api import DeployConflict, api_error
from ganops.pipeline.ports import DeployError

ISVC = {"resource": "inferenceservices.serving.kserve.io", "namespace": "ns", "name": "svc"}


def api_exception(status: int, reason: str, message: str) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "message": message})
    return exc


@pytest.mark.parametrize("status", [409, 422])
def test_a_conflict_or_a_failed_patch_test_is_a_conflict_on_both_targets(status: int) -> None:
    exc = api_exception(status, "Conflict", "the object has been modified")
    for where in (ISVC, {**ISVC, "resource": "deployments.apps"}):
        error = api_error(exc, "patch", **where)
        assert isinstance(error, DeployConflict)
        assert "changed while it was being written" in str(error)
        assert "the object has been modified" in str(error)


def test_401_403_404_and_unreachable_say_what_is_wrong() -> None:
    error = api_error(api_exception(401, "Unauthorized", "token expired"), "get", **ISVC)
    assert str(error) == "the Kubernetes API rejected the bot's credentials (401): token expired"
    error = api_error(api_exception(403, "Forbidden", "no"), "create", **ISVC)
    assert str(error).startswith(
        "RBAC: the bot may not create inferenceservices.serving.kserve.io 'svc' in namespace 'ns'"
    )
    assert "grant 'create' on inferenceservices" in str(error)
    error = api_error(
        api_exception(404, "NotFound", "gone"), "patch", **ISVC, not_found="not found, or no CRD"
    )
    assert str(error) == "inferenceservice ns/svc not found, or no CRD (404: gone)"
    unreachable = NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    error = api_error(unreachable, "get", **ISVC)
    assert type(error) is DeployError
    assert str(error).startswith("the Kubernetes API cannot be reached (get ns/svc)")
