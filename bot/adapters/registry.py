"""`ModelRegistry` over MLflow 3: registered models `ganops-<model>`, aliases, tags, artifacts.

The MlflowClient is created on first use (importing mlflow takes seconds; a sqlite store runs
its migrations on first contact), so building the bot's services stays fast. Missing models,
versions and aliases are None; anything else MLflow or the network says becomes UpstreamError.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ganops.bot.ports import ModelVersionInfo, UpstreamError
from ganops.model.registry import registered_name

T = TypeVar("T")
# What `download` fetches: artifacts of a run, or of a registered model version.
ARTIFACT_SCHEMES = ("runs:/", "models:/")
# MLflow's codes for "no such model / version / alias": these are answers, not failures.
_MISSING = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


class MlflowRegistry:
    def __init__(self, tracking_uri: str, registry_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self._client: Any = None
        self._lock = threading.Lock()

    def _mlflow(self) -> Any:
        with self._lock:
            if self._client is None:
                from mlflow import MlflowClient

                self._client = MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.registry_uri
                )
            return self._client

    def _call(self, what: str, fn: Callable[[Any], T], missing_ok: bool = False) -> T | None:
        from mlflow.exceptions import MlflowException

        try:
            return fn(self._mlflow())
        except MlflowException as exc:
            if missing_ok and exc.error_code in _MISSING:
                return None
            raise UpstreamError(f"MLflow could not {what}: {exc.message}") from exc
        except (OSError, ConnectionError) as exc:
            raise UpstreamError(f"MLflow at {self.tracking_uri} is unreachable: {exc}") from exc

    # --- reads ----------------------------------------------------------------------------

    def get_alias(self, model: str, alias: str) -> ModelVersionInfo | None:
        name = registered_name(model)
        mv = self._call(
            f"read {name}@{alias}",
            lambda c: c.get_model_version_by_alias(name, alias),
            missing_ok=True,
        )
        return None if mv is None else self._info(model, mv, with_metrics=True)

    def get_version(self, model: str, version: str) -> ModelVersionInfo | None:
        name = registered_name(model)
        mv = self._call(
            f"read {name} v{version}",
            lambda c: c.get_model_version(name, str(version)),
            missing_ok=True,
        )
        return None if mv is None else self._info(model, mv, with_metrics=True)

    def list_versions(self, model: str, limit: int = 20) -> list[ModelVersionInfo]:
        name = registered_name(model)
        found = self._call(
            f"list {name}",
            lambda c: c.search_model_versions(f"name='{name}'", max_results=1000),
        )
        versions = sorted(found or [], key=lambda mv: int(mv.version), reverse=True)[:limit]
        return [self._info(model, mv, with_metrics=False) for mv in versions]

    def _info(self, model: str, mv: Any, with_metrics: bool) -> ModelVersionInfo:
        tags: dict[str, str] = dict(mv.tags or {})
        metrics: dict[str, float] = {}
        if with_metrics and mv.run_id:
            run = self._call("read the run", lambda c: c.get_run(mv.run_id), missing_ok=True)
            metrics = dict(run.data.metrics) if run is not None else {}
        score = tags.get("deploy_score")
        return ModelVersionInfo(
            model=model,
            version=str(mv.version),
            aliases=tuple(mv.aliases or ()),
            tags=tags,
            created_at=(mv.creation_timestamp or 0) / 1000.0 or None,
            run_id=mv.run_id,
            deploy_score=_float(score) if score is not None else metrics.get("deploy_score"),
            metrics=metrics,
        )

    # --- writes ---------------------------------------------------------------------------

    def set_alias(self, model: str, alias: str, version: str) -> None:
        name = registered_name(model)
        self._call(
            f"set {name}@{alias}", lambda c: c.set_registered_model_alias(name, alias, version)
        )

    def delete_alias(self, model: str, alias: str) -> None:
        name = registered_name(model)
        self._call(
            f"delete {name}@{alias}",
            lambda c: c.delete_registered_model_alias(name, alias),
            missing_ok=True,
        )

    def set_tags(self, model: str, version: str, tags: Mapping[str, str]) -> None:
        name = registered_name(model)

        def write(c: Any) -> None:
            for key, value in tags.items():
                c.set_model_version_tag(name, str(version), key, str(value))

        self._call(f"tag {name} v{version}", write)

    def download(self, uri: str, dst: Path) -> Path:
        """Fetch an artifact of the MLflow artifact store (`runs:/<run>/<path>` or
        `models:/...`) into `dst` with MLflow's own resolution. Nothing else: a local path or
        a URL found in a tag is never opened (a tag `/proc/self/environ` would post the bot's
        secrets), and a path may not climb out of its run."""
        if not uri.startswith(ARTIFACT_SCHEMES):
            raise UpstreamError(f"not an MLflow artifact URI: {uri[:80]!r}")
        rest = uri.split(":/", 1)[1].lstrip("/")
        if any(part in ("..", "") for part in rest.split("/")) or "\\" in rest:
            raise UpstreamError(f"not an artifact path: {uri[:80]!r}")
        dst.mkdir(parents=True, exist_ok=True)

        def fetch(_: Any) -> str:
            import mlflow.artifacts

            return str(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=uri,
                    dst_path=str(dst),
                    tracking_uri=self.tracking_uri,
                    registry_uri=self.registry_uri,
                )
            )

        return Path(self._call(f"download {uri}", fetch) or dst)


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None
