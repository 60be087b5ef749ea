"""The contracts that the bot relies on: pipeline launchers and deployers.

These are small Protocols with frozen dataclasses. `pipeline/launch/` and
`pipeline/deploy/` hold the implementations; `bot/` sees only what is here.
Nothing in this module imports torch, kfp or kubernetes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# Every state a run can be in. The last five are final.
RunState = Literal[
    "queued",
    "running",
    "failed",  # a step failed; see RunStatus.failed_step and .error
    "gated",  # rejected by the evaluation gate; see RunResult.gate_reason
    "awaiting_approval",  # a challenger is registered and waits for a human
    "deployed",  # auto_deploy=true and the gate passed: approved by policy; the bot rolls out
    "cancelled",
]
FINAL_STATES: frozenset[str] = frozenset(
    {"failed", "gated", "awaiting_approval", "deployed", "cancelled"}
)

# The pipeline's steps, in order. Progress is reported against this list.
PIPELINE_STEPS: tuple[str, ...] = ("ingest", "validate", "train", "evaluate", "register", "gate")


class PipelineError(Exception):
    """Base class for errors a launcher reports to its caller."""


class UpstreamError(PipelineError):
    """KFP, MLflow or the local runner could not be reached or answered badly."""


class ConcurrentRunError(PipelineError):
    """A run for the same model is already going; `run_id` names it."""

    def __init__(self, model: str, run_id: str) -> None:
        super().__init__(f"a run for model {model!r} is already going: {run_id}")
        self.model = model
        self.run_id = run_id


class InvalidParamsError(PipelineError):
    """The run parameters are unknown, ill-typed or out of range.

    `key` names the offending parameter when there is one, so a form (the `/retrain` modal)
    can show the message next to its field; the message itself names it too.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class UnknownRunError(PipelineError):
    """No run with this id is known to the launcher."""


@dataclass(frozen=True)
class RunParams:
    """Parameters of one CT pipeline run (the `/retrain` keys)."""

    model: str = "cut"
    data: str = "synthetic"
    # None: the preset's value (`model.config.train_config`), so `/retrain gpus=1` trains the
    # full preset's published recipe and the tiny preset keeps its tuned one.
    epochs: int | None = None
    steps: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    gpus: int = 0  # per node
    # > 1: training runs as a Kubeflow Trainer TrainJob across this many nodes (Kubeflow only).
    nodes: int = 1
    image_size: int | None = None
    preset: str | None = None  # None: tiny without a GPU, full with one
    seed: int = 0
    auto_deploy: bool = False
    min_score: float = 0.0  # the gate's floor when no champion exists
    # Synthetic data only: training images per domain (None: the generator's default).
    synthetic_n: int | None = None
    # A drift retrain only (not a /retrain key): the captured inputs that join domain A, as
    # `pipeline.captured.dump_specs` writes them; "" for every other run.
    captured: str = ""
    # Not a /retrain key: set by the bot when an approver starts the run (`bot.runs.start`),
    # so the ingest step need not hold the data to GANOPS_DATA_ALLOW's prefixes. Its address,
    # redirect, symlink and archive rules hold for every run (`pipeline.steps.fetchguard`).
    data_anywhere: bool = False

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass(frozen=True)
class LaunchResult:
    run_id: str
    url: str | None  # the KFP UI link; None for local runs
    created: bool  # False when the request_id was seen before (idempotent repeat)


@dataclass(frozen=True)
class RunResult:
    """What a finished run produced, as far as the bot needs it."""

    model: str  # "cut" | "cyclegan"
    registered_model: str | None  # e.g. "ganops-cut"
    version: str | None  # MLflow model version of the challenger
    metrics: Mapping[str, float] = field(default_factory=dict)
    champion_metrics: Mapping[str, float] | None = None
    champion_version: str | None = None
    deploy_score: float | None = None
    gate_passed: bool | None = None
    gate_reason: str | None = None
    data_digest: str | None = None
    image: str | None = None
    # name -> local path or MLflow artifact URI: "sample_grid", "loss_curve".
    artifacts: Mapping[str, str] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    # What a reviewer should know about how it trained (e.g. torch.compile off); None: nothing.
    train_note: str | None = None
    # Links for people (GANOPS_MLFLOW_UI_URL); None where no MLflow UI is known.
    mlflow_run_url: str | None = None
    model_version_url: str | None = None


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    state: RunState
    request_id: str | None = None
    model: str = "cut"
    current_step: str | None = None
    steps_done: int = 0
    steps_total: int = len(PIPELINE_STEPS)
    created_at: float | None = None  # unix seconds
    updated_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    failed_step: str | None = None
    # Training progress inside the train step, when known.
    train_step: int | None = None
    train_total: int | None = None
    train_rate: float | None = None  # steps per second lately, for the ETA; None until known
    losses: Mapping[str, float] = field(default_factory=dict)
    url: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    result: RunResult | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


class PipelineLauncher(Protocol):
    """Starts and follows CT pipeline runs. Implementations: KubeflowLauncher, LocalLauncher."""

    def launch(self, params: RunParams, request_id: str) -> LaunchResult:
        """Start a run, or return the run already started for `request_id`.

        Raises:
            ConcurrentRunError: a run for the same model is still going.
            UpstreamError: the backend could not be reached.
        """
        ...

    def status(self, run_id: str) -> RunStatus: ...

    def cancel(self, run_id: str) -> None: ...

    def list_runs(self, limit: int = 20) -> list[RunStatus]: ...


# --- deploys -------------------------------------------------------------------------


class DeployError(Exception):
    """A deploy could not start (bad config, RBAC, unreachable API)."""


@dataclass(frozen=True)
class DeployResult:
    ok: bool
    model_uri: str  # what is (now) served
    version: str  # the version asked for
    previous_version: str | None
    rolled_back: bool
    seconds: float
    message: str  # one human line: "rolled out 3/3 replicas in 12.4 s", or why it failed
    # Set while the result is a canary's first step (its share of the traffic): the deploy
    # is under way and the aliases have not moved. None for a full rollout, and for a
    # canary's end (promoted or rolled back), which is recorded over it.
    canary_percent: int | None = None


@dataclass(frozen=True)
class Served:
    """What the serving endpoint runs for a model, read from the endpoint itself."""

    model: str
    version: str
    model_uri: str
    settled: bool  # the rollout to `version` is complete: every replica updated and ready


@dataclass(frozen=True)
class CanaryServed:
    """A canary beside the stable version, read from the endpoint itself."""

    model: str
    version: str  # the canary's
    model_uri: str
    percent: int  # the share of traffic it is given now, 1..99
    stable_version: str | None  # what takes the rest


class Deployer(Protocol):
    """Rolls the serving endpoint to a model version. Implementations: KServe, Kubernetes,
    local. A canary is the same endpoint with a second version beside the stable one, taking
    a share of its traffic; `deploy` replaces the stable version outright (rollbacks, the
    start-up reconciliation, and deploys with no canary steps)."""

    def deploy(self, model: str, version: str, model_uri: str) -> DeployResult:
        """Roll out `model_uri`; on failure roll back by itself and say so in the result."""
        ...

    def current(self, model: str) -> str | None:
        """The version now served, or None."""
        ...

    def served(self, model: str) -> Served | None:
        """What is served for `model` and whether its rollout finished; None when nothing
        of that model is served. The start-up reconciliation compares it with the registry.

        Raises:
            DeployError: the endpoint's state cannot be read.
        """
        ...

    def set_canary(self, model: str, version: str, model_uri: str, percent: int) -> DeployResult:
        """Serve `model_uri` as a canary taking `percent` (1..99) of `model`'s traffic beside
        the stable version: started if no canary of `version` runs, moved to `percent` if one
        does (another version's canary is replaced). Returns once the canary is ready and
        takes its share. `percent` 100 promotes it: it becomes the stable version with all
        the traffic, as `deploy` would leave the endpoint, and the canary is gone. A canary
        that fails to start is removed and the stable version keeps all the traffic
        (`ok=False, rolled_back=True`).

        Raises:
            DeployError: the canary could not be started (bad config, RBAC, unreachable API).
        """
        ...

    def abort_canary(self, model: str) -> DeployResult:
        """Remove `model`'s canary: the stable version takes all the traffic again. With no
        canary running, a no-op that succeeds. `version` of the result is the stable one."""
        ...

    def canary(self, model: str) -> CanaryServed | None:
        """The canary running beside `model`'s stable version, or None.

        Raises:
            DeployError: the endpoint's state cannot be read.
        """
        ...
