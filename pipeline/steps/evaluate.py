"""The evaluate step: the challenger against the champion (or, with none, the untrained
generator and the `min_score` floor), on the same fixed inputs. Its bar feeds the gate."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganops.model.registry import CHAMPION, model_uri, registered_name
from ganops.pipeline.events import step_scope

if TYPE_CHECKING:
    import torch

    from ganops.model.bundle import Bundle
    from ganops.model.evaluate import EvalReport
    from ganops.model.gate import Comparison


@dataclass(frozen=True)
class EvalOut:
    metrics: dict[str, float]
    deploy_score: float
    gate_bar: float
    champion_version: str  # "" when there is no champion
    scores_json: str


def run_evaluate_step(
    *,
    data_dir: str,
    model_dir: str,
    model: str,
    min_score: float,
    mlflow_uri: str,
    mlflow_run_id: str,
    events_dir: str,
    summary_path: str,
    grid_path: str,
) -> EvalOut:
    with step_scope(events_dir, "evaluate") as facts:
        from ganops.model.bundle import load_bundle
        from ganops.model.config import EvalConfig
        from ganops.model.distributed import pick_device
        from ganops.model.evaluate import evaluate, load_eval_data, untrained_baseline
        from ganops.model.gate import compare

        device = pick_device()
        challenger = load_bundle(Path(model_dir) / "bundle", device)
        champion, champion_version = load_champion(model, mlflow_uri, device)
        cfg = EvalConfig()
        data = load_eval_data(data_dir, cfg, challenger.net.image_size)
        champion_net = champion.generator if champion else None
        report = evaluate(challenger.generator, data, cfg, device, champion=champion_net)
        scores = _scores(report, champion_version, min_score)
        rival = report.champion_outputs
        if champion is None:
            baseline = untrained_baseline(challenger.net, data, cfg, device)
            scores.update(baseline_score=baseline.deploy_score, bar_kind="baseline")
            rival = baseline.outputs
        if report.outputs is None or rival is None:  # evaluate() always keeps them
            raise RuntimeError("the evaluation kept no outputs to compare")
        comparison = compare(
            report.outputs,
            rival,
            data,
            resamples=cfg.bootstrap_resamples,
            confidence=cfg.gate_confidence,
            margin=cfg.gate_margin,
            seed=cfg.seed,
        )
        scores["comparison"] = comparison.to_dict()
        floor = min_score if champion is None else float("-inf")
        scores["gate_bar"] = gate_bar(report.deploy_score, comparison, floor)
        _save(report, scores, summary_path, grid_path)
        scores["sample_grid_uri"] = _log(report, mlflow_uri, mlflow_run_id, model)
        facts.update(
            metrics=report.metrics,
            champion_metrics=report.champion_metrics,
            champion_version=champion_version,
            deploy_score=report.deploy_score,
            gate_bar=scores["gate_bar"],
            sample_grid=grid_path,
        )
        print(f"evaluate: deploy score {report.deploy_score:.4f}, bar {scores['gate_bar']:.4f}")
        return EvalOut(
            metrics=dict(report.metrics),
            deploy_score=float(report.deploy_score),
            gate_bar=float(scores["gate_bar"]),
            champion_version=champion_version,
            scores_json=json.dumps(scores, default=float),
        )


def gate_bar(deploy_score: float, comparison: Comparison, floor: float) -> float:
    """The score the challenger must exceed, so that the pipeline's `deploy_score > gate_bar`
    holds exactly when the comparison passes and the score clears `floor`: its own score less
    how far the confident lower bound of the difference lies above the margin. (Above the
    rival's score by the margin plus what the choice of inputs could explain.)"""
    return max(deploy_score - (comparison.lower - comparison.margin), floor)


def load_champion(model: str, mlflow_uri: str, device: torch.device) -> tuple[Bundle | None, str]:
    """The current champion of `ganops-<model>` and its version, or (None, "") if none."""
    if not mlflow_uri:
        return None, ""
    import mlflow
    from mlflow.exceptions import MlflowException

    from ganops.model.bundle import load_bundle
    from ganops.pipeline.steps.registry import client_for

    name = registered_name(model)
    try:
        version = str(client_for(mlflow_uri).get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
            return None, ""
        raise
    # load_bundle resolves models:/ URIs through MLflow's process-wide settings.
    mlflow.set_tracking_uri(mlflow_uri)
    mlflow.set_registry_uri(mlflow_uri)
    return load_bundle(model_uri(model, version=version), device), version


def _scores(report: EvalReport, champion_version: str, min_score: float) -> dict[str, Any]:
    return {
        "deploy_score": report.deploy_score,
        "metrics": report.metrics,
        "champion_metrics": report.champion_metrics,
        "champion_score": report.champion_score,
        "champion_version": champion_version or None,
        "deltas": report.deltas,
        "min_score": min_score,
        "gate_bar": report.champion_score,
        "bar_kind": CHAMPION,
    }


def _save(report: EvalReport, scores: dict[str, Any], summary_path: str, grid_path: str) -> None:
    Path(grid_path).parent.mkdir(parents=True, exist_ok=True)
    report.grid.save(grid_path, format="PNG")
    gate = f"\nGate bar: {scores['gate_bar']:.4f} ({scores['bar_kind']}).\n"
    Path(summary_path).parent.mkdir(parents=True, exist_ok=True)
    Path(summary_path).write_text(report.to_markdown() + gate)


def _log(report: EvalReport, mlflow_uri: str, run_id: str, model: str) -> str | None:
    """Metrics and the grid on the training run; returns the grid's artifact URI."""
    from ganops.model.tracking import make_tracker

    tracker = make_tracker(mlflow_uri or None, experiment=registered_name(model))
    with tracker.start_run(run_id=run_id or None):
        tracker.log_metrics({f"eval_{k}": v for k, v in report.metrics.items()})
        tracker.log_dict(report.to_dict(), "evaluation.json")
        return tracker.log_image(report.grid, "sample_grid.png")
