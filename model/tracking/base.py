"""Experiment tracking behind one small protocol: MLflow, in-memory, or nothing.

Training and evaluation take a `Tracker` and never import mlflow themselves. The factory
`model.tracking.make_tracker` picks the implementation from a URI: None gives `NullTracker`;
anything else an `MlflowTracker` (`model.tracking.mlflow_tracker`). Callers that want "no MLFLOW_TRACKING_URI means a local sqlite store" pass
`default_tracking_uri(state_dir)`.

MLflow is used through its fluent API (the pytorch flavour's `log_model` needs an active run),
so one `MlflowTracker` run is active per process at a time.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from PIL.Image import Image
    from torch import nn

log = logging.getLogger(__name__)


class TrackingError(Exception):
    """The tracking store refused a call or was used without an active run."""


class Tracker(Protocol):
    """What training, evaluation and the pipeline log. Artifact names are file names."""

    @property
    def run_id(self) -> str | None: ...

    def start_run(
        self,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        run_id: str | None = None,
    ) -> AbstractContextManager[Tracker]:
        """Open a run (or reopen `run_id`, e.g. on resume); the context closes it."""
        ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def log_image(self, image: Image, name: str) -> str | None:
        """Log a PIL image as `name` (e.g. "sample_grid.png"); returns its artifact URI."""
        ...

    def log_text(self, text: str, name: str) -> str | None: ...

    def log_dict(self, data: Mapping[str, Any], name: str) -> str | None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_bundle(
        self, bundle_dir: Path, generator: nn.Module, registered_model: str | None
    ) -> str | None:
        """Log the generator as the run's model with the bundle files as extra files, and
        register it under `registered_model`; returns the new version, or None."""
        ...


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts -> {"a.b": "value"}, values as strings (what MLflow params hold)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


class NullTracker:
    """Logs nothing. Used when no tracking URI is configured."""

    @property
    def run_id(self) -> str | None:
        return None

    @contextlib.contextmanager
    def start_run(
        self,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        run_id: str | None = None,
    ) -> Iterator[NullTracker]:
        yield self

    def log_params(self, params: Mapping[str, Any]) -> None:
        return None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        return None

    def log_image(self, image: Image, name: str) -> str | None:
        return None

    def log_text(self, text: str, name: str) -> str | None:
        return None

    def log_dict(self, data: Mapping[str, Any], name: str) -> str | None:
        return None

    def set_tags(self, tags: Mapping[str, str]) -> None:
        return None

    def log_bundle(
        self, bundle_dir: Path, generator: nn.Module, registered_model: str | None
    ) -> str | None:
        return None


class RecordingTracker(NullTracker):
    """Keeps everything in memory: for tests and for callers that summarise a run themselves."""

    def __init__(self) -> None:
        self.params: dict[str, str] = {}
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.artifacts: dict[str, Any] = {}
        self.tags: dict[str, str] = {}
        self.bundles: list[tuple[Path, str | None]] = []

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(flatten_params(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.metrics.append((step, {k: float(v) for k, v in metrics.items()}))

    def log_image(self, image: Image, name: str) -> str | None:
        self.artifacts[name] = image.copy()
        return f"memory:{name}"

    def log_text(self, text: str, name: str) -> str | None:
        self.artifacts[name] = text
        return f"memory:{name}"

    def log_dict(self, data: Mapping[str, Any], name: str) -> str | None:
        self.artifacts[name] = dict(data)
        return f"memory:{name}"

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update({k: str(v) for k, v in tags.items()})

    def log_bundle(
        self, bundle_dir: Path, generator: nn.Module, registered_model: str | None
    ) -> str | None:
        self.bundles.append((Path(bundle_dir), registered_model))
        return str(len(self.bundles)) if registered_model else None

    def history(self, name: str) -> list[tuple[int | None, float]]:
        """Every logged value of one metric, with its step."""
        return [(step, m[name]) for step, m in self.metrics if name in m]


def default_tracking_uri(state_dir: str | Path) -> str:
    """The embedded store: `sqlite:///<state_dir>/mlflow.db` (absolute path)."""
    return f"sqlite:///{Path(state_dir).resolve() / 'mlflow.db'}"


def artifact_root_for(tracking_uri: str, experiment: str) -> str | None:
    """Where a sqlite store's experiment keeps artifacts: `<db dir>/mlartifacts/<experiment>`.

    None for other stores (a tracking server decides for itself).
    """
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment) or "default"
    return str(db.parent / "mlartifacts" / safe)


def quiet_mlflow() -> None:
    """MLflow's INFO chatter (table creation, pickle advice) goes nowhere; warnings stay."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)


@contextlib.contextmanager
def captured_stdout() -> Iterator[io.StringIO]:
    """MLflow prints run links to stdout; keep stdout for our own (JSON) output."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield buffer
    if buffer.getvalue().strip():
        log.debug("mlflow: %s", buffer.getvalue().strip())


__all__ = [
    "NullTracker",
    "RecordingTracker",
    "Tracker",
    "TrackingError",
    "artifact_root_for",
    "captured_stdout",
    "default_tracking_uri",
    "flatten_params",
    "quiet_mlflow",
]
