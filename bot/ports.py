"""The bot's ports: small Protocols over every side effect, with the data they exchange.

Listeners and watchers see only these. `bot/services.py` builds the real implementations in
one place; tests pass the same implementations pointed at local servers, or fakes where no
local server can exist. Pipeline-side contracts are re-exported from `pipeline.ports`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from ganops.bot.canary.stats import VersionStats
from ganops.model.registry import model_uri
from ganops.pipeline.ports import (
    CanaryServed,
    ConcurrentRunError,
    Deployer,
    DeployError,
    DeployResult,
    InvalidParamsError,
    LaunchResult,
    PipelineError,
    PipelineLauncher,
    RunParams,
    RunResult,
    RunStatus,
    Served,
    UpstreamError,
)

__all__ = [
    "Approval",
    "ApprovalService",
    "CanaryServed",
    "ConcurrentRunError",
    "DecisionOutcome",
    "DeployError",
    "DeployResult",
    "Deployer",
    "DriftAlert",
    "InvalidParamsError",
    "LaunchResult",
    "MetricsSource",
    "ModelRegistry",
    "ModelVersionInfo",
    "PipelineError",
    "PipelineLauncher",
    "RunParams",
    "RunResult",
    "RunStatus",
    "Served",
    "UpstreamError",
    "VersionStats",
]


# --- model registry (MLflow) -------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersionInfo:
    model: str  # "cut"
    version: str
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    created_at: float | None = None  # unix seconds
    run_id: str | None = None
    deploy_score: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return model_uri(self.model, version=self.version)


class ModelRegistry(Protocol):
    def get_alias(self, model: str, alias: str) -> ModelVersionInfo | None: ...

    def get_version(self, model: str, version: str) -> ModelVersionInfo | None: ...

    def list_versions(self, model: str, limit: int = 20) -> list[ModelVersionInfo]: ...

    def set_alias(self, model: str, alias: str, version: str) -> None: ...

    def delete_alias(self, model: str, alias: str) -> None: ...

    def set_tags(self, model: str, version: str, tags: Mapping[str, str]) -> None: ...

    def download(self, uri: str, dst: Path) -> Path:
        """Fetch an artifact of the registry's artifact store (`runs:/<run>/<path>`) into
        `dst`; return its path. Never a local path. Raises UpstreamError."""
        ...


# --- metrics (Prometheus) ----------------------------------------------------------------


@dataclass(frozen=True)
class DriftAlert:
    model: str
    version: str
    score: float
    features: Mapping[str, float] = field(default_factory=dict)  # feature -> its drift score
    active_since: float | None = None  # unix seconds, from ALERTS_FOR_STATE when known
    # False: the version's score series is gone (server down, scrape failing). `score` and
    # `features` then mean nothing, and `active_since` is when the silence began, if known.
    has_data: bool = True
    # False: GanInputDrift does not fire for it; it is reported only because its score went
    # silent (GanDriftScoreAbsent, still held a while after the data is back). Opens nothing.
    firing: bool = True


class MetricsSource(Protocol):
    def firing_drift_alerts(self) -> list[DriftAlert]:
        """The GanInputDrift alerts now firing, and the versions whose drift score went
        silent (GanDriftScoreAbsent), the latter with `has_data=False`.

        Raises:
            UpstreamError: Prometheus cannot be reached.
        """
        ...

    def score_history(
        self, model: str, version: str, hours: float = 3.0
    ) -> list[tuple[float, float]]: ...

    def compare_versions(
        self, *, model: str, versions: Sequence[str], window_s: float
    ) -> dict[str, VersionStats]:
        """Each of `versions`' traffic over the last `window_s` seconds, for the canary
        analysis: one entry per version asked for, with zero requests where it has no data.

        Raises:
            UpstreamError: Prometheus cannot be reached.
        """
        ...


# --- approvals -----------------------------------------------------------------------------

ApprovalState = Literal["pending", "approved", "rejected", "expired", "superseded", "stale"]
ApprovalKind = Literal["deploy", "rollback"]


@dataclass(frozen=True)
class Approval:
    approval_id: str  # random and opaque: the only thing a button carries
    run_id: str | None
    model: str
    version: str
    model_uri: str
    kind: ApprovalKind
    requested_by: str
    state: ApprovalState
    created_at: float
    expires_at: float
    approvers: tuple[str, ...] = ()  # who said yes so far (the two-person rule needs two)
    decided_by: str | None = None
    decided_at: float | None = None
    channel: str | None = None
    message_ts: str | None = None
    # A rollback's compare-and-set: the champion it replaces. If the champion is another
    # version by the time it is decided (or rolled out), it goes stale and deploys nothing.
    expected_champion: str | None = None


DecisionStatus = Literal[
    "approved",  # this call approved it and ran the deploy (see .deploy)
    "rejected",
    "recorded",  # a first yes under the two-person rule; waiting for the second
    "refused",  # not an approver, or self-approval
    "already_decided",  # someone decided first; .approval says who
    "expired",
    "not_found",
    "stale",  # a rollback whose champion changed meanwhile: nothing deployed
]


@dataclass(frozen=True)
class DecisionOutcome:
    status: DecisionStatus
    message: str  # one line for the person who clicked
    approval: Approval | None = None
    deploy: DeployResult | None = None


class ApprovalService(Protocol):
    def request(
        self,
        *,
        model: str,
        version: str,
        model_uri: str,
        requested_by: str,
        run_id: str | None = None,
        kind: ApprovalKind = "deploy",
        channel: str | None = None,
    ) -> Approval:
        """Open a pending approval; a newer one for the same model supersedes older ones."""
        ...

    def attach_message(self, approval_id: str, channel: str, message_ts: str) -> None: ...

    def decide(self, approval_id: str, user_id: str, decision: str) -> DecisionOutcome:
        """The one decision function behind buttons, `/ganops approve|reject` and the CLI.
        The first decision wins; an approval runs the deploy exactly once."""
        ...

    def get(self, approval_id: str) -> Approval | None: ...

    def pending(self) -> list[Approval]: ...

    def expire_due(self) -> list[Approval]:
        """Expire pending approvals past their TTL; return those that just expired."""
        ...
