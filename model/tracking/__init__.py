"""Experiment tracking: the `Tracker` protocol (`base`) and its MLflow implementation.

This package re-exports the protocol's names and holds the factory. `MlflowTracker` is loaded
on first use, so importing the package does not import mlflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ganops.model.tracking.base import (
    NullTracker,
    RecordingTracker,
    Tracker,
    TrackingError,
    artifact_root_for,
    captured_stdout,
    default_tracking_uri,
    flatten_params,
    quiet_mlflow,
)

if TYPE_CHECKING:
    from ganops.model.tracking.mlflow_tracker import MlflowTracker


def make_tracker(uri: str | None, experiment: str = "ganops") -> Tracker:
    """None -> NullTracker; a tracking URI -> MlflowTracker on that store."""
    if not uri:
        return NullTracker()
    from ganops.model.tracking.mlflow_tracker import MlflowTracker

    return MlflowTracker(uri, experiment)


def __getattr__(name: str) -> Any:
    # MlflowTracker lives in its own module so that importing this one does not load mlflow.
    if name == "MlflowTracker":
        from ganops.model.tracking.mlflow_tracker import MlflowTracker

        return MlflowTracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MlflowTracker",
    "NullTracker",
    "RecordingTracker",
    "Tracker",
    "TrackingError",
    "artifact_root_for",
    "captured_stdout",
    "default_tracking_uri",
    "flatten_params",
    "make_tracker",
    "quiet_mlflow",
]
