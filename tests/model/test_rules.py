"""The alert rules: promtool checks and unit tests, the PrometheusRule twin, the short-`for`
variant used by local runs, and that the rules only name metrics the server exports.

`python -m tests.model.test_rules` rewrites manifests/monitoring/prometheusrule.yaml from
rules.yaml.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.prometheus import RULES, rules_with_for

MONITORING = RULES.parent
PROMETHEUSRULE = MONITORING / "prometheusrule.yaml"
RULES_TEST = MONITORING / "rules_test.yaml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
needs_promtool = pytest.mark.skipif(
    not Path(PROMTOOL).exists(),
    reason="promtool is not installed (apt-get install prometheus); CI installs it",
)

HEADER = """\
# The alert rules of rules.yaml as a PrometheusRule for the Prometheus Operator.
# Generated: edit rules.yaml, then run `python -m tests.model.test_rules`.
"""


def render_prometheusrule(rules: dict[str, Any]) -> str:
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "ganops-serving",
            "labels": {"app.kubernetes.io/name": "ganops-serving", "role": "alert-rules"},
        },
        "spec": {"groups": rules["groups"]},
    }
    return HEADER + yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, width=1000)


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the longer exprs) as `|` blocks, as rules.yaml has them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


@needs_promtool
def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests pin the `for:` durations: a drift alert that fires early fails them."""
    broken = rules_with_for(RULES, tmp_path / "rules.yaml", "30s")
    shutil.copy(RULES_TEST, tmp_path / "rules_test.yaml")
    assert broken.exists()
    result = _promtool("test", "rules", str(tmp_path / "rules_test.yaml"))
    assert result.returncode != 0
    assert "GanInputDrift" in result.stdout + result.stderr


def _broken_copy(tmp_path: Path, alert: str, change: Callable[[dict[str, Any]], None]) -> Path:
    doc = yaml.safe_load(RULES.read_text())
    for rule in (r for g in doc["groups"] for r in g["rules"]):
        if rule.get("alert") == alert:
            change(rule)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copy(RULES_TEST, tmp_path / "rules_test.yaml")
    return tmp_path / "rules_test.yaml"


@needs_promtool
def test_without_keep_firing_for_a_hovering_score_opens_new_episodes(tmp_path: Path) -> None:
    tests = _broken_copy(tmp_path, "GanInputDrift", lambda r: r.pop("keep_firing_for"))
    result = _promtool("test", "rules", str(tests))
    assert result.returncode != 0
    assert "alertname: GanInputDrift, time: 5m" in result.stdout + result.stderr


@needs_promtool
def test_without_its_keep_firing_for_the_silence_ends_before_drift_fires_again(
    tmp_path: Path,
) -> None:
    tests = _broken_copy(tmp_path, "GanDriftScoreAbsent", lambda r: r.pop("keep_firing_for"))
    result = _promtool("test", "rules", str(tests))
    assert result.returncode != 0
    assert "alertname: GanDriftScoreAbsent, time: 20m" in result.stdout + result.stderr


@needs_promtool
def test_the_absent_rule_ignores_a_version_replaced_by_a_newer_one(tmp_path: Path) -> None:
    def plain(rule: dict[str, Any]) -> None:
        rule["expr"] = "max by (model, version) (max_over_time(gan_input_drift_score[1h]))"
        rule["expr"] += " unless max by (model, version) (gan_input_drift_score)"

    result = _promtool("test", "rules", str(_broken_copy(tmp_path, "GanDriftScoreAbsent", plain)))
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "alertname: GanDriftScoreAbsent, time: 7m" in out
    assert 'model="cyclegan"' in out  # v1, replaced by v2, would alarm as silent


def test_prometheusrule_matches_rules_file() -> None:
    rules = yaml.safe_load(RULES.read_text())
    crd = yaml.safe_load(PROMETHEUSRULE.read_text())
    assert crd["kind"] == "PrometheusRule"
    assert crd["apiVersion"] == "monitoring.coreos.com/v1"
    assert crd["spec"]["groups"] == rules["groups"], (
        "prometheusrule.yaml is stale: run `python -m tests.model.test_rules`"
    )


def test_production_rules_wait_minutes_and_the_short_variant_seconds(tmp_path: Path) -> None:
    rules = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert set(rules) == {
        "GanInputDrift",
        "GanDriftScoreAbsent",
        "GanServingErrorRate",
        "GanServingLatencyHigh",
    }
    assert rules["GanInputDrift"]["for"] == "2m"
    assert rules["GanInputDrift"]["keep_firing_for"] == "10m"
    assert rules["GanInputDrift"]["expr"].strip() == (
        "max by (model, version) (gan_input_drift_score) > 1"
    )
    short = yaml.safe_load(rules_with_for(RULES, tmp_path / "short.yaml", "5s").read_text())
    short_rules = {r["alert"]: r for g in short["groups"] for r in g["rules"]}
    assert {r["for"] for r in short_rules.values()} == {"5s"}
    assert short_rules["GanInputDrift"]["keep_firing_for"] == "5s"
    assert {k: r["expr"] for k, r in short_rules.items()} == {
        k: r["expr"] for k, r in rules.items()
    }


def test_rules_name_only_metrics_the_server_exports() -> None:
    from ganops.model.serving.metrics import ServingMetrics

    # Labelled series only appear once set, so feed the metrics one model and one request.
    metrics = ServingMetrics()
    metrics.set_model("cut", "1", drift=True)
    metrics.observe_request(200, 0.01, 1)
    exported = {s.name for family in metrics.registry.collect() for s in family.samples}
    used = set(re.findall(r"\bgan_[a-z_]+", RULES.read_text()))
    assert used, "no metric names found in the rules"
    assert used <= exported, f"rules use metrics the server does not export: {used - exported}"


if __name__ == "__main__":
    PROMETHEUSRULE.write_text(render_prometheusrule(yaml.safe_load(RULES.read_text())))
    print(f"wrote {PROMETHEUSRULE}", file=sys.stderr)
