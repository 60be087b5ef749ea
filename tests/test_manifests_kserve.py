"""The KServe overlay (manifests/overlays/kserve, component manifests/components/kserve)
renders with the real `kubectl kustomize`, its InferenceService reads through KServe's models,
and the bot's settings from its ConfigMap point the KServe deployer at that object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ganops.bot.services import kube_target
from ganops.bot.settings import load_settings
from ganops.pipeline.deploy import KServeTarget
from ganops.pipeline.deploy.kserve_spec import CONTAINER, merge_predictor, predictor_spec
from tests.fakes.kserve_models import strict
from tests.fakes.kustomize import kustomize

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return kustomize(REPO / "manifests" / "overlays" / "kserve")


def only(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_the_inference_service_is_kserves_and_calls_itself_by_its_name(
    docs: list[dict[str, Any]],
) -> None:
    (raw,) = only(docs, "InferenceService")
    isvc = strict(raw, "V1beta1InferenceService")
    name = isvc.metadata.name
    (container,) = isvc.spec.predictor.containers
    assert container.name == CONTAINER
    assert container.args[container.args.index("--model-name") + 1] == name
    assert container.readiness_probe.http_get.path == f"/v2/models/{name}/ready"
    assert not [d for d in docs if d["kind"] in ("Deployment", "Service")
                and d["metadata"]["name"] == "ganops-serving"]  # fmt: skip
    (monitor,) = only(docs, "PodMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector == {"serving.kserve.io/inferenceservice": name}


def test_the_bots_settings_point_the_kserve_deployer_at_it(docs: list[dict[str, Any]]) -> None:
    (raw,) = only(docs, "InferenceService")
    config = next(
        d for d in only(docs, "ConfigMap") if d["metadata"]["name"] == "ganops-bot-config"
    )
    env = {k: v for k, v in config["data"].items() if v}
    target = kube_target(load_settings(env))
    assert isinstance(target, KServeTarget)
    assert (target.namespace, target.name) == (
        raw["metadata"]["namespace"],
        raw["metadata"]["name"],
    )
    assert target.mode == raw["metadata"]["annotations"]["serving.kserve.io/deploymentMode"]


def test_the_bot_may_do_what_the_deployer_does(docs: list[dict[str, Any]]) -> None:
    (raw,) = only(docs, "InferenceService")
    role = next(d for d in only(docs, "Role") if d["metadata"]["name"] == "ganops-bot-kserve")
    granted: set[str] = set()
    for rule in role["rules"]:
        if "inferenceservices" in rule["resources"] and "serving.kserve.io" in rule["apiGroups"]:
            names = rule.get("resourceNames")
            if names is None or raw["metadata"]["name"] in names:
                granted |= set(rule["verbs"])
    assert {"get", "patch", "create"} <= granted
    binding = next(
        d for d in only(docs, "RoleBinding") if d["roleRef"]["name"] == "ganops-bot-kserve"
    )
    bot = next(d for d in only(docs, "Deployment") if d["metadata"]["name"] == "ganops-bot")
    account = bot["spec"]["template"]["spec"]["serviceAccountName"]
    assert [s["name"] for s in binding["subjects"]] == [account]


def test_a_deploy_keeps_what_the_manifest_set(docs: list[dict[str, Any]]) -> None:
    from kserve import ApiClient

    (raw,) = only(docs, "InferenceService")
    target = KServeTarget(namespace="ganops", name=raw["metadata"]["name"], image="img:{version}")
    ours = ApiClient().sanitize_for_serialization(
        predictor_spec(target, version="7", model_uri="models:/ganops-cut/7")
    )
    merged = strict(merge_predictor(raw["spec"]["predictor"], ours), "V1beta1PredictorSpec")
    before = raw["spec"]["predictor"]["containers"][0]
    (container,) = merged.containers
    assert container.image == "img:7"
    assert container.resources.limits == before["resources"]["limits"]
    assert merged.max_replicas == raw["spec"]["predictor"]["maxReplicas"]
    env = {e.name: e.value for e in container.env}
    assert env == {"GANOPS_MODEL_URI": "models:/ganops-cut/7", "GANOPS_MODEL_VERSION": "7"}
