"""The ONE place where the bot's real clients are built: store, launcher, registry, deployer,
approvals, metrics and the Slack Web API client for background jobs.

Listeners reach them through `context["services"]` (set by `bot.app.create_app`); tests build
a `Services` by hand with the same implementations pointed at local servers, or fakes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.http_retry import (
    BackoffRetryIntervalCalculator,
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    RetryHandler,
)
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler

from ganops.bot.adapters.prometheus import PrometheusMetrics
from ganops.bot.adapters.registry import MlflowRegistry
from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.canary.controller import CanaryController
from ganops.bot.groups import GroupCache
from ganops.bot.leader import Leadership, SoleLeader, fence, make_leadership
from ganops.bot.metrics import METRICS, SlackErrorCounter
from ganops.bot.outbox import Outbox
from ganops.bot.ports import Deployer, MetricsSource, ModelRegistry, PipelineLauncher
from ganops.bot.runs.record import RunBook
from ganops.bot.settings import Settings
from ganops.bot.store import Store
from ganops.pipeline.deploy import KServeTarget, KubeTarget, make_deployer
from ganops.pipeline.launch import make_launcher
from ganops.pipeline.launch.kfp_client import KfpAccess
from ganops.pipeline.placement import Placement

log = logging.getLogger("ganops.bot")

# Slack's write tier allows ~1 call per second per channel; a burst (a restart catching up on
# every run) may meet several 429s in a row before the window moves on.
RATE_LIMIT_RETRIES = 5
TRANSIENT_RETRIES = 3


@dataclass
class Services:
    """Handles on everything with side effects. Shared by all threads; never copied."""

    store: Store
    runbook: RunBook
    launcher: PipelineLauncher
    registry: ModelRegistry
    slack: WebClient  # the bot's own client (token set) for jobs outside a request
    approvals: ApprovalBook | None = None
    deployer: Deployer | None = None
    metrics: MetricsSource | None = None
    # Several replicas: the command outbox and who runs the scheduled jobs.
    outbox: Outbox | None = None
    leader: Leadership = field(default_factory=SoleLeader)
    # Approved deploys as canaries, judged live (None: deploys go to 100% at once).
    canaries: CanaryController | None = None

    # Bolt deep-copies the request context for lazy listeners; handles must stay shared.
    def __deepcopy__(self, memo: dict[int, Any]) -> Services:
        return self

    def __copy__(self) -> Services:
        return self


def slack_retry_handlers() -> list[RetryHandler]:
    """What every WebClient of the bot retries, and how: a 429 after its `Retry-After`
    (slack_sdk's handler sleeps that long), a 500/503 or a dropped connection with backoff.
    A Slack error answer (`{"ok": false}`) is never retried: it is the caller's to handle."""
    backoff = BackoffRetryIntervalCalculator(backoff_factor=0.5)
    return [
        RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        ServerErrorRetryHandler(max_retry_count=TRANSIENT_RETRIES, interval_calculator=backoff),
        ConnectionErrorRetryHandler(max_retry_count=TRANSIENT_RETRIES, interval_calculator=backoff),
    ]


class FencedWebClient(WebClient):
    """The jobs' client: inside a scheduled job, every call is preceded by the fencing
    check (`bot.leader.fence`), so a replica that lost leadership posts nothing more."""

    leadership: Leadership = SoleLeader()

    def api_call(self, api_method: str, **kwargs: Any) -> Any:
        fence(self.leadership)
        return super().api_call(api_method, **kwargs)


def web_client(
    settings: Settings, *, token: str | None, leadership: Leadership | None = None
) -> WebClient:
    """The one way the bot builds a Slack Web API client (jobs, Bolt's, Socket Mode's)."""
    if leadership is not None:
        client = FencedWebClient(
            token=token,
            base_url=settings.slack_api_base,
            timeout=15,
            retry_handlers=[*slack_retry_handlers(), SlackErrorCounter(METRICS)],
        )
        client.leadership = leadership
        return client
    return WebClient(
        token=token,
        base_url=settings.slack_api_base,
        timeout=15,
        # The counter never retries: it counts each failed call by method for /metrics.
        retry_handlers=[*slack_retry_handlers(), SlackErrorCounter(METRICS)],
    )


def slack_client(settings: Settings, leadership: Leadership | None = None) -> WebClient:
    token = settings.bot_token.reveal() if settings.bot_token else None
    return web_client(settings, token=token, leadership=leadership)


def build_services(settings: Settings) -> Services:
    """Build the real clients from settings. Slow clients (kfp.Client, MLflow) connect lazily."""
    url = settings.database_url.reveal() if settings.database_url else None
    store = Store(settings.state_dir, url)
    leader = make_leadership(url)
    registry = MlflowRegistry(settings.mlflow_uri)
    slack = slack_client(settings, leader)
    deployer = make_deployer(
        settings.state_dir,
        settings.mlflow_uri,
        kube_target(settings),
        serve_args=capture_args(settings),
    )
    approvals = ApprovalBook(
        store,
        registry,
        deployer,
        approvers=frozenset(settings.approvers),
        approver_groups=frozenset(settings.approver_groups),
        group_members=GroupCache(group_members(slack), ttl_s=settings.group_ttl_s),
        allow_self=settings.allow_self_approval,
        required=settings.approvals_required,
        ttl_s=settings.approval_ttl_s,
        canary_steps=settings.canary_steps,
    )
    metrics = PrometheusMetrics(settings.prometheus_url, access=settings.prometheus)
    return Services(
        store=store,
        runbook=RunBook(store),
        launcher=build_launcher(settings),
        registry=registry,
        slack=slack,
        approvals=approvals,
        deployer=deployer,
        metrics=metrics,
        outbox=Outbox(store),
        leader=leader,
        canaries=make_canaries(settings, approvals, slack, metrics),
    )


def make_canaries(
    settings: Settings, book: ApprovalBook, client: WebClient, metrics: MetricsSource | None
) -> CanaryController | None:
    """The canary controller, hooked into `book`'s rollouts and judged from `metrics`; None
    when GANOPS_CANARY_STEPS is 100 alone (approved deploys go to 100% at once)."""
    if settings.canary_steps[0] >= 100:
        return None
    from ganops.bot.canary.controller import no_analysis
    from ganops.bot.canary.live import live_analysis, threshold_lines
    from ganops.bot.canary.notify import SlackNotifier

    thresholds = settings.canary_thresholds
    analyse = (
        live_analysis(metrics, thresholds)
        if metrics is not None
        else no_analysis("no Prometheus is configured: nothing to judge the canary on")
    )
    controller = CanaryController(
        store=book.store,
        rollout=book.rollout,
        analyse=analyse,
        step_s=settings.canary_step_s,
        notifier=SlackNotifier(client, settings.channel),
        thresholds=threshold_lines(thresholds),
    )
    book.rollout.canary = controller
    return controller


def build_launcher(settings: Settings) -> PipelineLauncher:
    """The pipeline launcher with every cluster setting: the bot's, and `ganops pipeline`'s."""
    return make_launcher(
        settings.state_dir,
        settings.kfp_host,
        settings.mlflow_uri,
        settings.image,
        **_launcher_options(settings),
    )


def cluster_placement(settings: Settings) -> Placement:
    """Where the pipeline's tasks run, from the cluster settings (`ganops pipeline compile`
    bakes the same into the YAML for the UI)."""
    cluster = settings.cluster
    pvc = cluster.artifact_pvc
    return Placement(
        gpu_node_selector=cluster.gpu_node_selector,
        data_secret=cluster.data_secret,
        # check_artifact_uri made the URI an absolute path whenever a claim is set.
        artifact_pvc=(pvc, cluster.artifact_uri or "") if pvc else None,
        steps_image=cluster.steps_image,
    )


def kube_target(settings: Settings) -> KubeTarget | KServeTarget | None:
    if settings.deployer == "kserve":
        cluster = settings.cluster
        return KServeTarget(
            namespace=settings.serving_namespace,
            name=cluster.inference_service,
            image=settings.serving_image or settings.image,
            mlflow_uri=settings.pipeline_mlflow_uri or settings.mlflow_uri,
            mode=cluster.kserve_mode,
            service_account=cluster.kserve_service_account,
            in_cluster=settings.in_cluster,
        )
    if settings.deployer != "kubernetes":
        return None
    return KubeTarget(
        namespace=settings.serving_namespace,
        deployment=settings.serving_deployment,
        container=settings.serving_container,
        in_cluster=settings.in_cluster,
        image=settings.serving_image,
    )


def group_members(slack: WebClient) -> Callable[[str], set[str]]:
    """Members of a Slack user group (usergroups.users.list), for approver groups."""

    def members(group_id: str) -> set[str]:
        resp = slack.usergroups_users_list(usergroup=group_id)
        return set(resp.get("users") or [])

    return members


def _launcher_options(settings: Settings) -> dict[str, object]:
    """On Kubeflow, the pipeline's pods may need another MLflow URL than the bot's."""
    cluster = settings.cluster
    options: dict[str, object] = {
        "checkpoint_minutes": cluster.checkpoint_minutes,
        "data_allow": tuple(settings.data_allow),  # checked again where the data is fetched
    }
    if cluster.artifact_uri:
        options["artifact_uri"] = cluster.artifact_uri
    if cluster.device_data_gb is not None:  # unset: the train pod's environment decides
        options["device_data_gb"] = cluster.device_data_gb
    if cluster.mlflow_ui_url:
        options["mlflow_ui_url"] = cluster.mlflow_ui_url
    if settings.kfp_host:
        options["access"] = KfpAccess(
            namespace=cluster.kfp_namespace, token_path=cluster.kfp_token_path
        )
        if cluster.kfp_ui_url:
            options["ui_host"] = cluster.kfp_ui_url
        options["placement"] = cluster_placement(settings)
        if settings.pipeline_mlflow_uri:
            options["pipeline_mlflow_uri"] = settings.pipeline_mlflow_uri
        if settings.database_url:  # replicas share the request id -> KFP run map
            options["database_url"] = settings.database_url.reveal()
    return options
    if settings.kfp_host and settings.pipeline_mlflow_uri:
        return {"pipeline_mlflow_uri": settings.pipeline_mlflow_uri}
    return {}


def capture_args(settings: Settings) -> list[str]:
    """The model server's input-capture flags (`ganops serve --capture-*`); none when off."""
    if settings.capture_rate <= 0 or not settings.capture_uri:
        return []
    return [
        f"--capture-rate={settings.capture_rate:g}",
        f"--capture-uri={settings.capture_uri}",
        f"--capture-days={settings.capture_days:g}",
    ]
