"""`MlflowTracker`: the `Tracker` protocol on an MLflow tracking and registry store.

Params, metrics, tags and artifacts go through an `MlflowClient` bound to the run; only the
model upload uses the fluent API, because the pytorch flavour logs to the active run. On a
sqlite store the experiment's artifacts live next to the database, in `mlartifacts/`, not in
the current directory.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from ganops.model.bundle import bundle_files, unwrap
from ganops.model.tracking.base import (
    TrackingError,
    artifact_root_for,
    captured_stdout,
    flatten_params,
    quiet_mlflow,
)

if TYPE_CHECKING:
    from PIL.Image import Image
    from torch import nn

log = logging.getLogger(__name__)


class MlflowTracker:
    """Tracks to `tracking_uri` in experiment `experiment` (created on first use)."""

    def __init__(self, tracking_uri: str, experiment: str = "ganops") -> None:
        quiet_mlflow()
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.last_model_uri: str | None = None
        self._run_id: str | None = None
        self._active = False

    @property
    def run_id(self) -> str | None:
        """The open run's id; after the run ends, the id of the last run."""
        return self._run_id

    def experiment_id(self) -> str:
        """Get or create the experiment (safe if another process creates it meanwhile)."""
        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            location = artifact_root_for(self.tracking_uri, self.experiment)
            try:
                return self.client.create_experiment(self.experiment, artifact_location=location)
            except MlflowException:
                found = self.client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            self.client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)

    @contextlib.contextmanager
    def start_run(
        self,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        run_id: str | None = None,
    ) -> Iterator[MlflowTracker]:
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        try:
            experiment_id = None if run_id else self.experiment_id()
            run = mlflow.start_run(
                run_id=run_id,
                experiment_id=experiment_id,
                run_name=run_name,
                tags={k: str(v) for k, v in (tags or {}).items()},
            )
        except MlflowException as exc:
            raise TrackingError(f"cannot start an MLflow run: {exc.message}") from None
        self._run_id, self._active = run.info.run_id, True
        status = "FAILED"
        try:
            yield self
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self._active = False
            with captured_stdout():
                mlflow.end_run(status)

    def _run(self) -> str:
        if not self._active or self._run_id is None:
            raise TrackingError("no active MLflow run: log inside `with tracker.start_run():`")
        return self._run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        batch = [Param(k, v) for k, v in flatten_params(params).items()]
        try:
            self.client.log_batch(self._run(), params=batch)
        except MlflowException as exc:
            # MLflow params are write-once; a resumed run that re-logs changed values ends here.
            log.warning("some params were not logged: %s", exc.message)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self._run(), metrics=batch)

    def artifact_uri(self, name: str) -> str:
        return f"runs:/{self._run()}/{name}"

    def log_image(self, image: Image, name: str) -> str | None:
        self.client.log_image(self._run(), image, artifact_file=name)
        return self.artifact_uri(name)

    def log_text(self, text: str, name: str) -> str | None:
        self.client.log_text(self._run(), text, name)
        return self.artifact_uri(name)

    def log_dict(self, data: Mapping[str, Any], name: str) -> str | None:
        self.client.log_dict(self._run(), dict(data), name)
        return self.artifact_uri(name)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self.client.log_batch(self._run(), tags=batch)

    def log_bundle(
        self, bundle_dir: Path, generator: nn.Module, registered_model: str | None
    ) -> str | None:
        import mlflow.pytorch
        import torch

        self._run()
        files = [str(p) for p in bundle_files(bundle_dir)]
        if not files:
            raise TrackingError(f"{bundle_dir}: no bundle files to log")
        # A CPU copy, unwrapped from DDP, so that the pickled model loads anywhere.
        plain = copy.deepcopy(unwrap(generator)).cpu().eval()
        with captured_stdout():
            info = mlflow.pytorch.log_model(
                plain,
                name="model",
                serialization_format="pickle",
                extra_files=files,
                registered_model_name=registered_model,
                # Skips MLflow's requirement inference, which reloads the model in a subprocess.
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
        self.last_model_uri = info.model_uri
        version = info.registered_model_version
        return None if version is None else str(version)

    def set_alias(self, registered_model: str, alias: str, version: str) -> None:
        """Point `alias` (challenger, champion, ...) of `registered_model` at `version`."""
        self.client.set_registered_model_alias(registered_model, alias, version)
