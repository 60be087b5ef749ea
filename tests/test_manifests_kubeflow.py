"""The multi-user Kubeflow wiring, rendered with the real `kubectl kustomize`: the bot's
projected KFP token, the profile namespace's RoleBindings and the trainjobs rule, and the
KFP API URL the ConfigMap and the docs agree on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ganops.pipeline.launch.kfp_client import DEFAULT_TOKEN_PATH
from tests.fakes.kustomize import kustomize
from tests.test_manifests import one, render

REPO = Path(__file__).resolve().parents[1]
KFP_API = "http://ml-pipeline.kubeflow:8888"


def render_profile() -> list[dict[str, Any]]:
    return kustomize(REPO / "manifests" / "kubeflow" / "profile")


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_the_bot_sends_a_projected_token_for_the_kfp_api(overlay: str) -> None:
    docs = render(overlay)
    pod = one(docs, "Deployment", "ganops-bot")["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "kfp-token"]
    [source] = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["audience"] == "pipelines.kubeflow.org"
    assert token["expirationSeconds"] >= 600  # the API server's minimum
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "kfp-token"]
    # kfp.Client (and our KfpAccess) read the token where this mount puts it.
    assert Path(mount["mountPath"]) / token["path"] == DEFAULT_TOKEN_PATH
    assert mount["readOnly"] is True
    config = one(docs, "ConfigMap", "ganops-bot-config")["data"]
    assert config["KFP_HOST"] == KFP_API
    image = config["GANOPS_IMAGE"]
    serving = one(docs, "Deployment", "ganops-serving")["spec"]["template"]["spec"]
    assert image == serving["containers"][0]["image"]  # the pipeline runs what serves


def test_the_configmap_is_settings_the_bot_accepts() -> None:
    from ganops.bot.settings import load_settings

    config = one(render("production"), "ConfigMap", "ganops-bot-config")["data"]
    settings = load_settings({k: v for k, v in config.items() if v})
    assert settings.kfp_host == KFP_API


def test_the_docs_name_the_same_kfp_api() -> None:
    # Every in-cluster KFP URL the docs give (the UI's Service included, a past mistake).
    hosts = {
        match
        for doc in (REPO / "docs").glob("*.md")
        for match in re.findall(r"https?://ml-pipeline[^\s`|)\"']*", doc.read_text())
    }
    assert hosts == {KFP_API}


def test_the_profile_namespace_binds_the_bot_and_the_pipeline_pods() -> None:
    docs = render_profile()
    namespace = {d["metadata"]["namespace"] for d in docs}
    assert len(namespace) == 1
    role = one(docs, "Role", "ganops-trainjobs")
    [rule] = [r for r in role["rules"] if "trainjobs" in r["resources"]]
    assert rule["apiGroups"] == ["trainer.kubeflow.org"]
    # What pipeline/steps/trainjob.py calls: create, get (follow), delete (retry, cancel).
    assert {"create", "get", "delete"} <= set(rule["verbs"])
    assert any(r["resources"] == ["pods"] and "get" in r["verbs"] for r in role["rules"])
    bot_ns = one(render("production"), "ServiceAccount", "ganops-bot")["metadata"]["namespace"]
    bot = {"kind": "ServiceAccount", "name": "ganops-bot", "namespace": bot_ns}
    edit = one(docs, "RoleBinding", "ganops-bot-kubeflow-edit")
    assert edit["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": "kubeflow-edit"}  # fmt: skip
    assert edit["subjects"] == [bot]
    assert one(docs, "RoleBinding", "ganops-bot-trainjobs")["subjects"] == [bot]
    runner = one(docs, "RoleBinding", "ganops-trainjobs-pipeline-runner")
    assert runner["roleRef"]["name"] == "ganops-trainjobs"
    assert runner["subjects"] == [
        {"kind": "ServiceAccount", "name": "default-editor", "namespace": namespace.pop()}
    ]
