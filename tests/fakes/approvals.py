"""Test doubles for the approval tests: an in-memory model registry and a recording deployer.

The registry keeps versions, aliases and tags the way MLflow does (an alias points at one
version; tags merge). The deployer records every call, so tests can count deploys exactly.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ganops.bot.ports import (
    CanaryServed,
    DeployResult,
    ModelVersionInfo,
    Served,
    UpstreamError,
)


@dataclass
class MemoryRegistry:
    versions: dict[str, list[str]] = field(default_factory=dict)
    aliases: dict[tuple[str, str], str] = field(default_factory=dict)
    tags: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    fail: bool = False  # simulate MLflow being down
    runs: dict[tuple[str, str], str] = field(default_factory=dict)  # (model, version) -> run
    artifacts: dict[str, bytes] = field(default_factory=dict)  # "runs:/<run>/<path>" -> bytes

    def add(self, model: str, *versions: str) -> None:
        self.versions.setdefault(model, []).extend(versions)

    def _check(self) -> None:
        if self.fail:  # what MlflowRegistry turns a connection failure into
            raise UpstreamError("MLflow at memory:// is unreachable: connection refused")

    def _info(self, model: str, version: str) -> ModelVersionInfo:
        names = tuple(a for (m, a), v in self.aliases.items() if m == model and v == version)
        tags = dict(self.tags.get((model, version), {}))
        score = tags.get("deploy_score")  # as MlflowRegistry reads it
        return ModelVersionInfo(
            model,
            version,
            names,
            tags,
            run_id=self.runs.get((model, version)),
            deploy_score=None if score is None else float(score),
        )

    def get_alias(self, model: str, alias: str) -> ModelVersionInfo | None:
        self._check()
        version = self.aliases.get((model, alias))
        return self._info(model, version) if version is not None else None

    def get_version(self, model: str, version: str) -> ModelVersionInfo | None:
        self._check()
        return self._info(model, version) if version in self.versions.get(model, []) else None

    def list_versions(self, model: str, limit: int = 20) -> list[ModelVersionInfo]:
        return [self._info(model, v) for v in self.versions.get(model, [])][:limit]

    def set_alias(self, model: str, alias: str, version: str) -> None:
        self._check()
        self.aliases[(model, alias)] = version

    def delete_alias(self, model: str, alias: str) -> None:
        self.aliases.pop((model, alias), None)

    def set_tags(self, model: str, version: str, tags: Mapping[str, str]) -> None:
        self._check()
        self.tags.setdefault((model, version), {}).update(tags)

    def download(self, uri: str, dst: Path) -> Path:
        """Like MLflow's artifact store: only what was logged, under its own name."""
        self._check()
        if uri not in self.artifacts:
            raise UpstreamError(f"no artifact {uri}")
        dst.mkdir(parents=True, exist_ok=True)
        path = dst / uri.rsplit("/", 1)[-1]
        path.write_bytes(self.artifacts[uri])
        return path


@dataclass
class RecordingDeployer:
    """Counts deploys; `ok=False` makes every deploy fail and roll back."""

    ok: bool = True
    delay_s: float = 0.0
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    serving: dict[str, str] = field(default_factory=dict)  # model -> version
    uris: dict[str, str] = field(default_factory=dict)  # model -> its model URI
    canaries: dict[str, CanaryServed] = field(default_factory=dict)
    canary_calls: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deploy(self, model: str, version: str, model_uri: str) -> DeployResult:
        with self.lock:
            self.calls.append((model, version, model_uri))
        time.sleep(self.delay_s)
        previous = self.serving.get(model)
        if self.ok:
            self.serving[model] = version
            self.uris[model] = model_uri
        return DeployResult(
            ok=self.ok,
            model_uri=model_uri if self.ok else "",
            version=version,
            previous_version=previous,
            rolled_back=not self.ok,
            seconds=self.delay_s,
            message="rolled out 1/1 replicas" if self.ok else "readiness failed",
        )

    def current(self, model: str) -> str | None:
        return self.serving.get(model)

    def served(self, model: str) -> Served | None:
        version = self.serving.get(model)
        uri = self.uris.get(model, "")
        return Served(model, version, uri, settled=True) if version is not None else None

    def set_canary(self, model: str, version: str, model_uri: str, percent: int) -> DeployResult:
        """A canary at `percent`; 100 promotes it (`deploy`). `ok=False` fails it."""
        if percent >= 100:
            self.canaries.pop(model, None)
            return self.deploy(model, version, model_uri)
        with self.lock:
            self.canary_calls.append((model, version, percent))
            if self.ok:
                self.canaries[model] = CanaryServed(
                    model, version, model_uri, percent, self.serving.get(model)
                )
        return DeployResult(
            ok=self.ok,
            model_uri=model_uri if self.ok else self.uris.get(model, ""),
            version=version,
            previous_version=self.serving.get(model),
            rolled_back=not self.ok,
            seconds=0.0,
            message=f"canary at {percent}%" if self.ok else "canary readiness failed",
        )

    def abort_canary(self, model: str) -> DeployResult:
        with self.lock:
            self.canary_calls.append((model, "abort", 0))
            self.canaries.pop(model, None)
        stable = self.serving.get(model, "")
        return DeployResult(
            True, self.uris.get(model, ""), stable, None, True, 0.0, "canary removed"
        )

    def canary(self, model: str) -> CanaryServed | None:
        return self.canaries.get(model)


@dataclass
class FileRegistry(MemoryRegistry):
    """A `MemoryRegistry` kept in a JSON file, so that a test and the bot processes it starts
    share one registry, as they would share MLflow. Reads see the last write of any process."""

    path: Path = Path("registry.json")

    def __post_init__(self) -> None:
        if not self.path.exists():
            self._save()

    def _load(self) -> None:
        data = json.loads(self.path.read_text())
        self.versions = data["versions"]
        self.aliases = {tuple(k.split("@", 1)): v for k, v in data["aliases"].items()}
        self.tags = {tuple(k.split("/", 1)): v for k, v in data["tags"].items()}

    def _save(self) -> None:
        data = {
            "versions": self.versions,
            "aliases": {f"{m}@{a}": v for (m, a), v in self.aliases.items()},
            "tags": {f"{m}/{v}": t for (m, v), t in self.tags.items()},
        }
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)  # a reader in another process sees all of it or none

    def add(self, model: str, *versions: str) -> None:
        self._load()
        super().add(model, *versions)
        self._save()

    def get_alias(self, model: str, alias: str) -> ModelVersionInfo | None:
        self._load()
        return super().get_alias(model, alias)

    def get_version(self, model: str, version: str) -> ModelVersionInfo | None:
        self._load()
        return super().get_version(model, version)

    def set_alias(self, model: str, alias: str, version: str) -> None:
        self._load()
        super().set_alias(model, alias, version)
        self._save()

    def set_tags(self, model: str, version: str, tags: Mapping[str, str]) -> None:
        self._load()
        super().set_tags(model, version, tags)
        self._save()
