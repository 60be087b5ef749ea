"""The kustomize manifests render, and their wiring holds together.

Rendered with the real `kubectl kustomize`; the probe paths are checked against a real
`ganops serve` process, not against a list of strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.kustomize import kustomize

REPO = Path(__file__).resolve().parents[1]
OVERLAYS = ("dev", "production")


def render(overlay: str) -> list[dict[str, Any]]:
    return kustomize(REPO / "manifests" / "overlays" / overlay)


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module", params=OVERLAYS)
def docs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


def test_every_object_lands_in_the_overlay_namespace(docs: list[dict[str, Any]]) -> None:
    [ns] = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == ns, doc["metadata"]["name"]


def test_deployment_selectors_match_their_pod_labels(docs: list[dict[str, Any]]) -> None:
    for dep in (d for d in docs if d["kind"] == "Deployment"):
        selector = dep["spec"]["selector"]["matchLabels"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), dep["metadata"]["name"]


def test_service_and_servicemonitor_reach_the_serving_pods(docs: list[dict[str, Any]]) -> None:
    serving = one(docs, "Deployment", "ganops-serving")
    service = one(docs, "Service", "ganops-serving")
    monitor = one(docs, "ServiceMonitor", "ganops-serving")
    pod_labels = serving["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    container_ports = {
        p["name"] for c in serving["spec"]["template"]["spec"]["containers"] for p in c["ports"]
    }
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports
    assert {e["path"] for e in monitor["spec"]["endpoints"]} == {"/metrics"}


def test_rbac_allows_only_the_serving_deployment_and_its_canary(
    docs: list[dict[str, Any]],
) -> None:
    from ganops.pipeline.deploy.kube_canary import KubeCanary

    bot = one(docs, "Deployment", "ganops-bot")
    config = one(docs, "ConfigMap", "ganops-bot-config")["data"]
    role = one(docs, "Role", "ganops-bot-deployer")
    binding = one(docs, "RoleBinding", "ganops-bot-deployer")
    serving_name = config["GANOPS_SERVING_DEPLOYMENT"]
    one(docs, "Deployment", serving_name)  # the deployment the bot is told to roll exists
    # The canary's name as the deployer derives it from the setting.
    canary_name = KubeCanary.name_for(serving_name)
    verbs: dict[str | None, set[str]] = {}
    for rule in role["rules"]:
        if "deployments" in rule["resources"]:
            for name in rule.get("resourceNames") or [None]:
                verbs.setdefault(name, set()).update(rule["verbs"])
    assert verbs == {
        serving_name: {"get", "patch", "watch"},
        canary_name: {"get", "patch", "delete"},  # set_canary, abort_canary, canary()
        None: {"create"},  # RBAC cannot name what create makes; nothing else is unnamed
    }
    replicasets = [r for r in role["rules"] if "replicasets" in r["resources"]]
    assert sorted(replicasets[0]["verbs"]) == ["get", "list"]
    allowed = ("get", "list", "patch", "watch", "create", "delete")
    assert all(v in allowed for r in role["rules"] for v in r["verbs"])
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    [subject] = binding["subjects"]
    assert subject["name"] == bot["spec"]["template"]["spec"]["serviceAccountName"]
    assert subject["namespace"] == role["metadata"]["namespace"]
    assert config["GANOPS_SERVING_NAMESPACE"] == role["metadata"]["namespace"]


def test_the_serving_selector_leaves_room_for_a_canary(docs: list[dict[str, Any]]) -> None:
    """The stable Deployment selects one track; the Service selects the pods of both."""
    serving = one(docs, "Deployment", "ganops-serving")
    service = one(docs, "Service", "ganops-serving")
    selector = serving["spec"]["selector"]["matchLabels"]
    assert selector.get("ganops.io/track") == "stable"
    assert "ganops.io/track" not in service["spec"]["selector"]
    canary_labels = {**serving["spec"]["template"]["metadata"]["labels"],
                     "ganops.io/track": "canary"}  # fmt: skip
    assert service["spec"]["selector"].items() <= canary_labels.items()
    assert not selector.items() <= canary_labels.items()


def test_bot_secrets_come_by_reference(docs: list[dict[str, Any]]) -> None:
    bot = one(docs, "Deployment", "ganops-bot")
    [container] = bot["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
        assert "value" not in env[name]
    assert not [d for d in docs if d["kind"] == "Secret"]


def test_the_bot_pod_outlives_its_shutdown_grace(docs: list[dict[str, Any]]) -> None:
    """SIGTERM waits GANOPS_SHUTDOWN_GRACE for a rollout; the kubelet must not SIGKILL first."""
    from ganops.bot.settings import load_settings
    from ganops.pipeline.deploy import KubeTarget

    bot = one(docs, "Deployment", "ganops-bot")
    config = one(docs, "ConfigMap", "ganops-bot-config")["data"]
    grace = load_settings({"GANOPS_SHUTDOWN_GRACE": config["GANOPS_SHUTDOWN_GRACE"]})
    # A failed rollout waits out the deployer's progress deadline, then its rollback's.
    deadline = KubeTarget.__dataclass_fields__["progress_deadline_s"].default
    assert grace.shutdown_grace_s >= 2 * deadline
    pod_grace = bot["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert pod_grace >= grace.shutdown_grace_s + 30


def test_prometheus_rule_matches_the_plain_rules_file(docs: list[dict[str, Any]]) -> None:
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    plain = yaml.safe_load((REPO / "manifests" / "monitoring" / "rules.yaml").read_text())
    assert rule["spec"]["groups"] == plain["groups"]
    alerts = {r["alert"] for g in plain["groups"] for r in g["rules"] if "alert" in r}
    assert "GanInputDrift" in alerts


def test_grafana_dashboard_queries_the_served_metrics(docs: list[dict[str, Any]]) -> None:
    cm = one(docs, "ConfigMap", "ganops-grafana-dashboard")
    dashboard = json.loads(cm["data"]["grafana-dashboard.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "gan_input_drift_score",
        "gan_request_latency_seconds_bucket",
        "gan_requests_total",
        "gan_model_info",
    ):
        assert metric in exprs, metric


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.fakes.serving import make_bundle, start_server

    bundle = make_bundle(tmp_path_factory.mktemp("bundle") / "bundle")
    proc = start_server(bundle)
    try:
        proc.wait_ready()
        yield proc.url
    finally:
        proc.stop()


@pytest.mark.slow
def test_probe_paths_exist_in_the_real_server(server: str) -> None:
    import urllib.request

    docs = render("production")
    serving = one(docs, "Deployment", "ganops-serving")
    [container] = serving["spec"]["template"]["spec"]["containers"]
    probes = [container[k]["httpGet"]["path"] for k in container if k.endswith("Probe")]
    assert set(probes) >= {"/readyz", "/healthz"}
    for path in probes:
        with urllib.request.urlopen(server + path, timeout=10) as resp:
            assert resp.status == 200, path


def test_the_operators_selector_labels_are_set_once_on_monitors_and_rules(
    docs: list[dict[str, Any]],
) -> None:
    selected = [d for d in docs if d["kind"] in ("ServiceMonitor", "PrometheusRule")]
    assert {d["metadata"]["name"] for d in selected if d["kind"] == "ServiceMonitor"} == {
        "ganops-serving",
        "ganops-bot",
    }
    for doc in selected:
        assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack", doc["kind"]
    others = [d for d in docs if d not in selected]
    assert not [d for d in others if "release" in d["metadata"].get("labels", {})]
    # One place: no manifest but the component's transformer names the label.
    setting = re.compile(r"^\s*release:", re.MULTILINE)  # a YAML key, not a comment
    files = [p for p in (REPO / "manifests").rglob("*.yaml") if setting.search(p.read_text())]
    assert [p.name for p in files] == ["selector-labels.yaml"]


def test_grafana_sidecar_finds_the_dashboard(docs: list[dict[str, Any]]) -> None:
    cm = one(docs, "ConfigMap", "ganops-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_serving_has_a_disruption_budget_and_an_autoscaler(docs: list[dict[str, Any]]) -> None:
    serving = one(docs, "Deployment", "ganops-serving")
    pod_labels = serving["spec"]["template"]["metadata"]["labels"]
    pdb = one(docs, "PodDisruptionBudget", "ganops-serving")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # A budget that allows no disruption at all would block every node drain.
    assert pdb["spec"].get("maxUnavailable", 0) >= 1 or pdb["spec"]["minAvailable"] < 1
    hpa = one(docs, "HorizontalPodAutoscaler", "ganops-serving")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "ganops-serving")
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    [container] = serving["spec"]["template"]["spec"]["containers"]
    assert "cpu" in container["resources"]["requests"]  # utilisation needs a request


def test_bot_probes_hit_its_health_port(docs: list[dict[str, Any]]) -> None:
    bot = one(docs, "Deployment", "ganops-bot")
    [container] = bot["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = container["args"]
    assert str(ports["metrics"]) == args[args.index("--health-port") + 1]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
    service = one(docs, "Service", "ganops-bot")
    monitor = one(docs, "ServiceMonitor", "ganops-bot")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"metrics"}
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


def test_production_runs_two_bot_replicas_on_postgresql() -> None:
    """Issue 22: 2 replicas rolled one at a time, spread over nodes, kept by a budget of
    minAvailable 1, the database URL from a Secret, and no state volume to share."""
    docs = render("production")
    bot = one(docs, "Deployment", "ganops-bot")
    spec = bot["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    [term] = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    pdb = one(docs, "PodDisruptionBudget", "ganops-bot")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    ref = env["GANOPS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("ganops-database", "url")
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    # Leadership is a PostgreSQL advisory lock: the Role gains nothing (no Leases).
    role = one(docs, "Role", "ganops-bot-deployer")
    assert not [r for r in role["rules"] if "coordination.k8s.io" in r["apiGroups"]]


def test_dev_keeps_one_bot_on_its_sqlite_volume() -> None:
    docs = render("dev")
    bot = one(docs, "Deployment", "ganops-bot")
    assert bot["spec"]["replicas"] == 1
    assert bot["spec"]["strategy"]["type"] == "Recreate"  # one writer of the SQLite file
    claims = [v for v in bot["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    [claim] = claims
    one(docs, "PersistentVolumeClaim", claim["persistentVolumeClaim"]["claimName"])
    env = {e["name"] for e in bot["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "GANOPS_DATABASE_URL" not in env
