"""The bot's settings: one frozen, validated object, built once at start-up from the environment.

Nothing below `bot.__main__` reads `os.environ`; everything gets values from here. A missing or
malformed setting raises `ConfigError` with one line that names the variable, the bad value
(never a secret's) and what would be accepted.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ganops.bot.canary.thresholds import CanaryThresholds, load_canary_thresholds
from ganops.bot.cluster_settings import (
    ClusterSettings,
    check_artifact_uri,
    load_cluster_settings,
)
from ganops.bot.errors import ConfigError
from ganops.bot.prometheus_access import PrometheusAccess, load_prometheus_access

Transport = Literal["shell", "socket", "http"]
DeployerKind = Literal["local", "kubernetes", "kserve"]

DEFAULT_API_URL = "https://slack.com/api/"
DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"
DEFAULT_IMAGE = "ganops-trainer:latest"
SHELL_CHANNEL = "C_GANOPS"  # the shell adapter's one channel, #ganops
DEFAULT_MAX_GPUS = 1
DEFAULT_MAX_STEPS = 20_000
DEFAULT_MAX_EPOCHS = 200  # the full preset's own recipe
DEFAULT_MAX_NODES = 1  # more than one node is a multi-node Kubeflow TrainJob: an approver's call
DEFAULT_RUN_TIMEOUT_S = 6 * 3600.0

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# Slack ids: users U…/W…, user groups S…. Underscores allow the shell adapter's U_ALICE.
_USER_ID = re.compile(r"^[UW][A-Z0-9_]+$")
_OS_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9_]+$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")


class Secret:
    """A token that never shows itself in repr, str or logs; `reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    """Every knob of the bot process. Build it with `load_settings`, then pass it down."""

    state_dir: Path
    mlflow_uri: str
    bot_token: Secret | None = None
    app_token: Secret | None = None
    signing_secret: Secret | None = None
    slack_api_url: str = DEFAULT_API_URL
    channel: str = SHELL_CHANNEL
    # Where /retrain and /ganops answer (GANOPS_CHANNEL, comma-separated; the first is `channel`,
    # where the bot posts on its own). Elsewhere they answer with a pointer to `channel`.
    # Left empty, it is `channel` alone, so the two can never disagree.
    channels: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    approver_groups: tuple[str, ...] = ()
    kfp_host: str | None = None
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    approval_ttl_s: float = 24 * 3600.0
    allow_self_approval: bool = False
    approvals_required: int = 1
    image: str = DEFAULT_IMAGE
    drift_interval_s: float = 30.0
    poll_interval_s: float = 2.0
    transport: Transport = "shell"
    http_port: int | None = None
    # Where approved models go: a local model server, a Kubernetes Deployment, or a KServe
    # InferenceService (its name and mode: `cluster.inference_service`, `cluster.kserve_mode`).
    deployer: DeployerKind = "local"
    serving_namespace: str = "ganops"
    serving_deployment: str = "ganops-serving"
    serving_container: str = "server"
    serving_image: str | None = None  # e.g. "registry/ganops-trainer:{version}"
    in_cluster: bool = False
    # SIGTERM waits this long for an in-flight rollout: a failed one waits out the progress
    # deadline (600 s) and then its rollback's, so two deadlines and a minute. The pod's
    # terminationGracePeriodSeconds must cover it.
    shutdown_grace_s: float = 1260.0
    # MLflow as the pipeline's pods reach it (in-cluster URL); None: the same as mlflow_uri.
    pipeline_mlflow_uri: str | None = None
    # Bounds on what anyone may ask of /retrain; past one, the request needs an approver.
    max_gpus: int = DEFAULT_MAX_GPUS
    max_steps: int = DEFAULT_MAX_STEPS
    max_epochs: int = DEFAULT_MAX_EPOCHS  # a run given epochs and no steps trains this long
    max_nodes: int = DEFAULT_MAX_NODES
    run_timeout_s: float = DEFAULT_RUN_TIMEOUT_S  # the run watcher cancels a run past it
    # `data=` prefixes anyone may use; `synthetic` always. Empty: only synthetic.
    data_allow: tuple[str, ...] = ()
    # Kubeflow, object storage and GPU nodes (bot/cluster_settings.py).
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    # TLS (verified by default), CA bundle and bearer token for PROMETHEUS_URL.
    prometheus: PrometheusAccess = field(default_factory=PrometheusAccess)
    # The closed drift loop: a sample of served inputs (0: off), where it goes, for how long,
    # and how many a drift retrain needs before it is worth launching.
    capture_rate: float = 0.0
    capture_uri: str | None = None
    capture_days: float = 30.0
    drift_min_captured: int = 64
    # A replaced version's episode resolves once the new version scored under 1 this long.
    drift_resolve_after_s: float = 300.0
    # New data offers a retrain: the watched source (any fsspec URI), how often, how many.
    data_watch: str | None = None
    data_watch_interval_s: float = 3600.0
    data_watch_min: int = 100
    # Approver user groups' members (usergroups.users.list) are cached this long, refreshed
    # in the background so that no ack waits on Slack.
    group_ttl_s: float = 300.0
    # `ganops approvals decide` votes only as its caller: OS user -> Slack user id, set at
    # deploy time. Empty (the default): the CLI can only inspect.
    cli_users: tuple[tuple[str, str], ...] = ()
    # Several replicas share one PostgreSQL (GANOPS_DATABASE_URL); None: SQLite in state_dir.
    database_url: Secret | None = None
    # How long a claimed outbox row stays claimed without its worker's heartbeat.
    outbox_lease_s: float = 30.0
    # An approved deploy goes out as a canary: these shares of the traffic in turn (the last
    # is 100: promoted), each held this long and judged live. (100,) alone: no canary.
    canary_steps: tuple[int, ...] = (10, 50, 100)
    canary_step_s: float = 600.0
    # The canary analysis' limits (GANOPS_CANARY_MAX_*, GANOPS_CANARY_MIN_REQUESTS).
    canary_thresholds: CanaryThresholds = field(default_factory=CanaryThresholds)

    # Frozen, so a copy is the object itself (Bolt deep-copies the context for lazy listeners).
    def __post_init__(self) -> None:
        if not self.channels:
            object.__setattr__(self, "channels", (self.channel,))
        elif self.channel not in self.channels:
            raise ConfigError(f"channel {self.channel!r} is not one of channels {self.channels}")

    def __deepcopy__(self, memo: dict[int, object]) -> Settings:
        return self

    def cli_user(self, os_user: str) -> str | None:
        """The Slack user id `GANOPS_CLI_USERS` maps this OS user to, or None."""
        return dict(self.cli_users).get(os_user)

    @property
    def slack_api_base(self) -> str:
        """The Web API base URL with the trailing slash WebClient expects."""
        return self.slack_api_url if self.slack_api_url.endswith("/") else self.slack_api_url + "/"


def load_settings(
    env: Mapping[str, str], *, http: bool = False, port: int | None = None
) -> Settings:
    """Validate `env` (normally `os.environ`) into Settings.

    The transport follows from the flags and tokens: `http` → HTTP (needs the signing secret
    and the bot token); both tokens → Socket Mode; no token at all → the shell adapter.

    Raises:
        ConfigError: one line naming the first bad or missing setting.
    """
    state_dir = Path(_get(env, "GANOPS_STATE_DIR") or ".ganops").expanduser()
    bot_token = _secret(env, "SLACK_BOT_TOKEN")
    app_token = _secret(env, "SLACK_APP_TOKEN")
    signing = _secret(env, "SLACK_SIGNING_SECRET")
    transport = _transport(http, bot_token, app_token, signing)
    approvers, groups = _approvers(_get(env, "GANOPS_APPROVERS"))
    channels = _channels(env, transport)
    return Settings(
        state_dir=state_dir,
        mlflow_uri=_get(env, "MLFLOW_TRACKING_URI")
        or f"sqlite:///{state_dir.resolve() / 'mlflow.db'}",
        bot_token=bot_token,
        app_token=app_token,
        signing_secret=signing,
        slack_api_url=_url(env, "SLACK_API_URL", DEFAULT_API_URL),
        channel=channels[0],
        channels=channels,
        approvers=approvers,
        approver_groups=groups,
        kfp_host=_optional_url(env, "KFP_HOST"),
        prometheus_url=_url(env, "PROMETHEUS_URL", DEFAULT_PROMETHEUS_URL),
        approval_ttl_s=_duration(env, "GANOPS_APPROVAL_TTL", "24h"),
        allow_self_approval=_bool(env, "GANOPS_ALLOW_SELF_APPROVAL"),
        approvals_required=_choice_int(env, "GANOPS_APPROVALS_REQUIRED", (1, 2), 1),
        image=_image(env),
        drift_interval_s=_duration(env, "GANOPS_DRIFT_INTERVAL", "30"),
        poll_interval_s=_duration(env, "GANOPS_POLL_INTERVAL", "2"),
        transport=transport,
        http_port=_port(port) if transport == "http" else None,
        deployer=_deployer(env),
        serving_namespace=_name(env, "GANOPS_SERVING_NAMESPACE", "ganops"),
        serving_deployment=_name(env, "GANOPS_SERVING_DEPLOYMENT", "ganops-serving"),
        serving_container=_name(env, "GANOPS_SERVING_CONTAINER", "server"),
        serving_image=_get(env, "GANOPS_SERVING_IMAGE"),
        in_cluster=_get(env, "KUBERNETES_SERVICE_HOST") is not None,
        shutdown_grace_s=_duration(env, "GANOPS_SHUTDOWN_GRACE", "1260"),
        pipeline_mlflow_uri=_optional_url(env, "GANOPS_PIPELINE_MLFLOW_URI"),
        max_gpus=_count(env, "GANOPS_MAX_GPUS", DEFAULT_MAX_GPUS),
        max_steps=_count(env, "GANOPS_MAX_STEPS", DEFAULT_MAX_STEPS),
        max_epochs=_count(env, "GANOPS_MAX_EPOCHS", DEFAULT_MAX_EPOCHS),
        max_nodes=_nodes(env),
        run_timeout_s=_duration(env, "GANOPS_RUN_TIMEOUT", "6h"),
        data_allow=_prefixes(env, "GANOPS_DATA_ALLOW"),
        cluster=_cluster(env),
        prometheus=load_prometheus_access(env, _url(env, "PROMETHEUS_URL", DEFAULT_PROMETHEUS_URL)),
        capture_rate=_number(env, "GANOPS_CAPTURE_RATE", 0.0, (0.0, 1.0)),
        capture_uri=_get(env, "GANOPS_CAPTURE_URI") or str(state_dir.resolve() / "captured"),
        capture_days=_number(env, "GANOPS_CAPTURE_DAYS", 30.0, (1e-3, 36500.0)),
        drift_min_captured=int(_number(env, "GANOPS_DRIFT_MIN_CAPTURED", 64, (2, 100000))),
        drift_resolve_after_s=_duration(env, "GANOPS_DRIFT_RESOLVE_AFTER", "5m"),
        data_watch=_get(env, "GANOPS_DATA_WATCH"),
        data_watch_interval_s=_duration(env, "GANOPS_DATA_WATCH_INTERVAL", "1h"),
        data_watch_min=int(_number(env, "GANOPS_DATA_WATCH_MIN", 100, (1, 10_000_000))),
        group_ttl_s=_duration(env, "GANOPS_GROUP_TTL", "5m"),
        cli_users=_cli_users(_get(env, "GANOPS_CLI_USERS")),
        database_url=_database_url(env),
        outbox_lease_s=_duration(env, "GANOPS_OUTBOX_LEASE", "30"),
        canary_steps=_canary_steps(env),
        canary_step_s=60.0 * _number(env, "GANOPS_CANARY_STEP_MINUTES", 10.0, (0.05, 1440.0)),
        canary_thresholds=load_canary_thresholds(env),
    )


# --- one checker per kind of value ------------------------------------------------------


def _cluster(env: Mapping[str, str]) -> ClusterSettings:
    cluster = load_cluster_settings(env)
    check_artifact_uri(cluster, kfp_host=_optional_url(env, "KFP_HOST"))
    return cluster


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value.strip() if value is not None and value.strip() else None


def _database_url(env: Mapping[str, str]) -> Secret | None:
    url = _get(env, "GANOPS_DATABASE_URL")
    if url is None:
        return None
    if url.split("://", 1)[0] not in {"postgresql", "postgres"}:
        raise ConfigError(
            "GANOPS_DATABASE_URL must be a postgresql://user:password@host:5432/db URL "
            "(unset it for SQLite in GANOPS_STATE_DIR)"
        )
    return Secret(url)  # it may hold a password: never in logs or reprs


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    value = _get(env, name)
    if value is not None and any(c.isspace() for c in value):
        raise ConfigError(f"{name} contains whitespace (paste the token alone)")
    return Secret(value) if value else None


def _transport(
    http: bool, bot: Secret | None, app: Secret | None, signing: Secret | None
) -> Transport:
    if http:
        if signing is None:
            raise ConfigError(
                "--http needs SLACK_SIGNING_SECRET (Basic Information > App Credentials)"
            )
        if bot is None:
            raise ConfigError("--http needs SLACK_BOT_TOKEN (xoxb-…, OAuth & Permissions)")
        return "http"
    if bot is None and app is None:
        return "shell"
    if bot is None or app is None:
        missing = "SLACK_BOT_TOKEN" if bot is None else "SLACK_APP_TOKEN"
        raise ConfigError(
            f"Socket Mode needs both SLACK_BOT_TOKEN and SLACK_APP_TOKEN; {missing} is missing "
            "(or unset both for the shell adapter, or pass --http)"
        )
    if not app.reveal().startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN is not an app-level token (it starts with xapp-)")
    return "socket"


def _approvers(raw: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    users: list[str] = []
    groups: list[str] = []
    for item in (raw or "").split(","):
        ident = item.strip().lstrip("@")
        if not ident:
            continue
        if _USER_ID.match(ident):
            users.append(ident)
        elif _GROUP_ID.match(ident):
            groups.append(ident)
        else:
            raise ConfigError(
                f"GANOPS_APPROVERS={raw!r}: {ident!r} is not a Slack user id (U…/W…) "
                "or user group id (S…)"
            )
    return tuple(dict.fromkeys(users)), tuple(dict.fromkeys(groups))


def _cli_users(raw: str | None) -> tuple[tuple[str, str], ...]:
    """`alice=U_ALICE,bob=U_BOB`: each OS user once, each value a Slack user id."""
    pairs: dict[str, str] = {}
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        os_user, _, slack_id = (part.strip() for part in item.partition("="))
        if not _OS_USER.match(os_user) or not _USER_ID.match(slack_id):
            raise ConfigError(
                f"GANOPS_CLI_USERS={raw!r}: {item.strip()!r} is not os_user=U… "
                "(e.g. alice=U0123ABCD)"
            )
        if os_user in pairs:
            raise ConfigError(f"GANOPS_CLI_USERS={raw!r}: {os_user!r} is listed twice")
        pairs[os_user] = slack_id
    return tuple(pairs.items())


def _channels(env: Mapping[str, str], transport: Transport) -> tuple[str, ...]:
    value = _get(env, "GANOPS_CHANNEL")
    if value is None:
        if transport == "shell":
            return (SHELL_CHANNEL,)
        raise ConfigError("GANOPS_CHANNEL is required with Slack (the channel id, e.g. C0123ABCD)")
    found = [c.strip() for c in value.split(",")]
    if any(not c or any(ch.isspace() for ch in c) for c in found):
        raise ConfigError(f"GANOPS_CHANNEL={value!r} is not a channel id (e.g. C0123ABCD)")
    return tuple(dict.fromkeys(found))


def _nodes(env: Mapping[str, str]) -> int:
    """GANOPS_MAX_NODES: at least 1 (every run has a node) and at most the params' range."""
    value = _count(env, "GANOPS_MAX_NODES", DEFAULT_MAX_NODES)
    if not 1 <= value <= 64:
        raise ConfigError(f"GANOPS_MAX_NODES={value} must be from 1 to 64")
    return value


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = _get(env, name) or default
    if not _URL.match(value):
        raise ConfigError(f"{name}={value!r} is not an http(s) URL")
    return value


def _optional_url(env: Mapping[str, str], name: str) -> str | None:
    return _url(env, name, "") if _get(env, name) else None


def _duration(env: Mapping[str, str], name: str, default: str) -> float:
    raw = _get(env, name) or default
    match = _DURATION.match(raw.lower())
    if match is None:
        raise ConfigError(f"{name}={raw!r} is not a duration (try 24h, 90m or 3600)")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{name}={raw!r} must be longer than zero")
    return seconds


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = (_get(env, name) or "").lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (true or false)")


def _choice_int(env: Mapping[str, str], name: str, choices: tuple[int, ...], default: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) not in choices:
        allowed = " or ".join(str(c) for c in choices)
        raise ConfigError(f"{name}={raw!r} must be {allowed}")
    return int(raw)


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise ConfigError(f"{name}={raw!r} must be a whole number (0 or more)")
    return int(raw)


def _prefixes(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated data prefixes. A bare scheme or host would allow far more than meant,
    so each must name a location: `s3://bucket/`, `https://host/path/` or `/abs/folder/`."""
    raw = _get(env, name)
    found: list[str] = []
    for item in (raw or "").split(","):
        prefix = item.strip()
        if not prefix:
            continue
        _, sep, rest = prefix.partition("://")
        if any(c.isspace() for c in prefix) or (sep and not rest.strip("/")):
            raise ConfigError(
                f"{name}={raw!r}: {prefix!r} is not a data prefix (e.g. s3://team-bucket/)"
            )
        if not sep and not prefix.startswith("/"):
            raise ConfigError(f"{name}={raw!r}: a folder prefix must be absolute, not {prefix!r}")
        found.append(prefix)
    return tuple(dict.fromkeys(found))


def _canary_steps(env: Mapping[str, str]) -> tuple[int, ...]:
    """GANOPS_CANARY_STEPS: rising percentages ending at 100, e.g. "10,50,100"."""
    raw = _get(env, "GANOPS_CANARY_STEPS") or "10,50,100"
    hint = "rising percentages from 1 to 100 that end at 100, e.g. 10,50,100 (100 alone: no canary)"
    try:
        steps = tuple(int(part) for part in raw.replace(" ", "").split(","))
    except ValueError:
        raise ConfigError(f"GANOPS_CANARY_STEPS={raw!r} must be {hint}") from None
    rising = all(a < b for a, b in itertools.pairwise(steps))
    if not rising or steps[0] < 1 or steps[-1] != 100:
        raise ConfigError(f"GANOPS_CANARY_STEPS={raw!r} must be {hint}")
    return steps


def _number(
    env: Mapping[str, str], name: str, default: float, bounds: tuple[float, float]
) -> float:
    raw = _get(env, name)
    try:
        value = float(raw) if raw is not None else default
    except ValueError:
        value = float("nan")
    if not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"{name}={raw!r} must be a number from {bounds[0]:g} to {bounds[1]:g}")
    return value


def _image(env: Mapping[str, str]) -> str:
    value = _get(env, "GANOPS_IMAGE") or DEFAULT_IMAGE
    if any(c.isspace() for c in value):
        raise ConfigError(f"GANOPS_IMAGE={value!r} is not an image reference (repo/name:tag)")
    return value


def _deployer(env: Mapping[str, str]) -> DeployerKind:
    """GANOPS_DEPLOYER, or GANOPS_DEPLOY_TARGET (the same setting by the name issue 25 uses)."""
    named = {k: (_get(env, k) or "").lower() for k in ("GANOPS_DEPLOYER", "GANOPS_DEPLOY_TARGET")}
    given = {k: v for k, v in named.items() if v}
    if len(set(given.values())) > 1:
        raise ConfigError(
            f"GANOPS_DEPLOYER={named['GANOPS_DEPLOYER']!r} and GANOPS_DEPLOY_TARGET="
            f"{named['GANOPS_DEPLOY_TARGET']!r} disagree; set one"
        )
    name, raw = next(iter(given.items()), ("GANOPS_DEPLOYER", "local"))
    if raw == "local":
        return "local"
    if raw in ("kubernetes", "k8s"):
        return "kubernetes"
    if raw == "kserve":
        return "kserve"
    raise ConfigError(f"{name}={raw!r} must be local, kubernetes or kserve")


def _name(env: Mapping[str, str], name: str, default: str) -> str:
    value = _get(env, name) or default
    if not _K8S_NAME.match(value):
        raise ConfigError(f"{name}={value!r} is not a Kubernetes name (lower case, digits, -)")
    return value


def _port(port: int | None) -> int:
    if port is None or not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port (0..65535)")
    return port
