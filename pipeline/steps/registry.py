"""The register and gate steps: a model version aliased `challenger`, then the verdict."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganops.model.registry import CHALLENGER, CHAMPION, TRAIN_NOTE_TAG, registered_name
from ganops.pipeline.events import step_scope

if TYPE_CHECKING:
    from mlflow import MlflowClient

# Run tags the train step sets, copied onto the model version.
_COPIED_RUN_TAGS = ("data_digest", "image", "params", "kfp_run_id", "loss_curve", TRAIN_NOTE_TAG)


class RegistryError(Exception):
    """The model registry is not configured or refused a change."""


def client_for(mlflow_uri: str) -> MlflowClient:
    if not mlflow_uri:
        raise RegistryError("no MLflow tracking URI was given to the pipeline (mlflow_uri)")
    from mlflow import MlflowClient

    from ganops.model.tracking import quiet_mlflow

    quiet_mlflow()
    return MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)


def run_register_step(
    *,
    model_dir: str,
    model: str,
    mlflow_uri: str,
    mlflow_run_id: str,
    champion_version: str,
    scores_json: str,
    kfp_run_id: str,
    events_dir: str,
) -> str:
    """Log the bundle as a new version of `ganops-<model>`, tag it, alias it `challenger`."""
    with step_scope(events_dir, "register") as facts:
        from ganops.model.bundle import load_bundle
        from ganops.model.tracking import make_tracker

        name = registered_name(model)
        client = client_for(mlflow_uri)
        bundle_dir = Path(model_dir) / "bundle"
        bundle = load_bundle(bundle_dir)
        tracker = make_tracker(mlflow_uri, experiment=name)
        with tracker.start_run(run_id=mlflow_run_id):
            version = tracker.log_bundle(bundle_dir, bundle.generator, name)
        if version is None:
            raise RegistryError(f"MLflow did not register a version of {name}")
        run_tags = client.get_run(mlflow_run_id).data.tags
        scores = json.loads(scores_json or "{}")
        tags = {k: run_tags[k] for k in _COPIED_RUN_TAGS if k in run_tags}
        tags.update(
            kfp_run_id=kfp_run_id,
            deploy_score=_text(scores.get("deploy_score")),
            champion_version=champion_version,
            champion_score=_text(scores.get("champion_score")),
            scores=scores_json,
        )
        if scores.get("sample_grid_uri"):
            tags["sample_grid"] = scores["sample_grid_uri"]
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        client.set_registered_model_alias(name, CHALLENGER, version)
        facts.update(registered_model=name, version=version)
        print(f"register: {name} version {version} aliased 'challenger'", flush=True)
        return version


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def gate_reason(passed: bool, deploy_score: float, bar: float, scores: dict[str, Any]) -> str:
    """One line that says what the bar was and how the challenger did against it."""
    kind = scores.get("bar_kind", "")
    if kind == CHAMPION:
        champion = scores.get("champion_score")
        champion_text = f"{champion:.4f}" if isinstance(champion, int | float) else "?"
        what = (
            f"bar {bar:.4f}; the champion (version {scores.get('champion_version')}) "
            f"scores {champion_text}"
        )
    else:
        base, floor = scores.get("baseline_score"), scores.get("min_score")
        what = f"no champion yet; bar {bar:.4f} = max(untrained generator {base:.4f}, min_score {floor:g})"
    verdict = "beats" if passed else "does not beat"
    line = f"deploy score {deploy_score:.4f} {verdict} the bar: {what}"
    comparison = scores.get("comparison")
    if comparison:  # the paired bootstrap behind the bar (model/gate.py)
        rival = "champion" if kind == CHAMPION else "untrained generator"
        pct = round(100 * comparison["confidence"])
        line += (
            f"; vs the {rival}: {comparison['diff']:+.4f} "
            f"(interval {comparison['lower']:+.4f}…{comparison['upper']:+.4f} over "
            f"{comparison['num_inputs']} inputs, needs > {comparison['margin']:g} "
            f"with {pct}% confidence)"
        )
    return line


def run_gate_step(
    *,
    passed: bool,
    version: str,
    model: str,
    deploy_score: float,
    bar: float,
    scores_json: str,
    auto_deploy: bool,
    mlflow_uri: str,
    events_dir: str,
) -> str:
    """Record the gate's verdict on the version; with auto_deploy, approve it by policy.

    Returns the run's final state: "gated", "awaiting_approval" or "deployed".
    """
    with step_scope(events_dir, "gate") as facts:
        name = registered_name(model)
        client = client_for(mlflow_uri)
        reason = gate_reason(passed, deploy_score, bar, json.loads(scores_json or "{}"))
        client.set_model_version_tag(name, version, "gate_passed", str(passed).lower())
        client.set_model_version_tag(name, version, "gate_reason", reason)
        deployed = passed and auto_deploy
        if deployed:
            _approve_by_policy(client, name, version)
        state = "deployed" if deployed else ("awaiting_approval" if passed else "gated")
        facts.update(gate_passed=passed, gate_reason=reason, deployed=deployed)
        print(f"gate: {state}: {reason}", flush=True)
        return state


def _approve_by_policy(client: MlflowClient, name: str, version: str) -> None:
    """auto_deploy: the gate passed and the requester asked for a deploy. That is no
    approval by itself: the bot counts it as the requester's vote (only an approver's, and
    under the two-person rule a second approver must still agree), rolls the version out
    through its approvals path, and tags `approved_by` when it is really approved. Only a
    successful rollout moves the `champion` and `previous_champion` aliases.
    """
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for key, value in (("decision", "auto_deploy"), ("auto_deploy_at", stamp)):
        client.set_model_version_tag(name, version, key, value)
