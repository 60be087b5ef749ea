"""Settings: one validated object; every bad setting is one clear line (exit 2 from the CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ganops.bot.errors import ConfigError
from ganops.bot.settings import Secret, load_settings

SLACK = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "GANOPS_CHANNEL": "C1"}


def test_defaults_give_the_shell_adapter_on_a_local_state_dir() -> None:
    s = load_settings({})
    assert s.transport == "shell"
    assert s.state_dir == Path(".ganops")
    assert s.mlflow_uri == f"sqlite:///{Path('.ganops').resolve() / 'mlflow.db'}"
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.prometheus_url == "http://127.0.0.1:9090"
    assert s.approval_ttl_s == 24 * 3600
    assert s.approvals_required == 1
    assert s.poll_interval_s == 2
    assert not s.allow_self_approval
    assert s.kfp_host is None
    assert s.deployer == "local"


def test_every_setting_is_read() -> None:
    env = SLACK | {
        "SLACK_SIGNING_SECRET": "sss",
        "SLACK_API_URL": "http://127.0.0.1:9999/api",
        "GANOPS_APPROVERS": "U1ABC, W2DEF,S3GROUP",
        "GANOPS_STATE_DIR": "/tmp/x",
        "KFP_HOST": "http://kfp:8888",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "PROMETHEUS_URL": "http://prom:9090",
        "GANOPS_APPROVAL_TTL": "90m",
        "GANOPS_ALLOW_SELF_APPROVAL": "true",
        "GANOPS_APPROVALS_REQUIRED": "2",
        "GANOPS_IMAGE": "reg/trainer:1",
        "GANOPS_DRIFT_INTERVAL": "1m",
        "GANOPS_POLL_INTERVAL": "0.5",
        "GANOPS_DEPLOYER": "kubernetes",
        "GANOPS_SERVING_NAMESPACE": "ml",
    }
    s = load_settings(env)
    assert s.transport == "socket"
    assert s.approvers == ("U1ABC", "W2DEF")
    assert s.approver_groups == ("S3GROUP",)
    assert s.slack_api_base == "http://127.0.0.1:9999/api/"
    assert (s.kfp_host, s.mlflow_uri, s.prometheus_url) == (
        "http://kfp:8888",
        "http://mlflow:5000",
        "http://prom:9090",
    )
    assert s.approval_ttl_s == 5400
    assert s.allow_self_approval
    assert s.approvals_required == 2
    assert (s.image, s.drift_interval_s, s.poll_interval_s) == ("reg/trainer:1", 60, 0.5)
    assert (s.deployer, s.serving_namespace) == ("kubernetes", "ml")


def test_secrets_never_show_in_repr() -> None:
    s = load_settings(SLACK | {"SLACK_SIGNING_SECRET": "very-secret-value"})
    shown = repr(s) + str(s)
    assert "xoxb-1" not in shown
    assert "xapp-1" not in shown
    assert "very-secret-value" not in shown
    assert s.bot_token == Secret("xoxb-1")
    assert s.bot_token.reveal() == "xoxb-1"


@pytest.mark.parametrize(
    ("env", "http", "line"),
    [
        ({"GANOPS_APPROVAL_TTL": "abc"}, False,
         "GANOPS_APPROVAL_TTL='abc' is not a duration (try 24h, 90m or 3600)"),
        ({"GANOPS_APPROVAL_TTL": "0"}, False, "GANOPS_APPROVAL_TTL='0' must be longer than zero"),
        ({"GANOPS_POLL_INTERVAL": "-1"}, False, "GANOPS_POLL_INTERVAL='-1' is not a duration"),
        ({"GANOPS_APPROVALS_REQUIRED": "3"}, False, "GANOPS_APPROVALS_REQUIRED='3' must be 1 or 2"),
        ({"GANOPS_ALLOW_SELF_APPROVAL": "maybe"}, False, "'maybe' is not a boolean"),
        ({"GANOPS_APPROVERS": "alice"}, False, "'alice' is not a Slack user id"),
        ({"PROMETHEUS_URL": "prom:9090"}, False, "PROMETHEUS_URL='prom:9090' is not an http(s) URL"),
        ({"SLACK_API_URL": "ftp://x"}, False, "SLACK_API_URL='ftp://x' is not an http(s) URL"),
        ({"KFP_HOST": "kfp"}, False, "KFP_HOST='kfp' is not an http(s) URL"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, False, "SLACK_APP_TOKEN is missing"),
        ({"SLACK_APP_TOKEN": "xapp-1"}, False, "SLACK_BOT_TOKEN is missing"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-2"}, False, "starts with xapp-"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, True, "--http needs SLACK_SIGNING_SECRET"),
        ({"SLACK_SIGNING_SECRET": "s"}, True, "--http needs SLACK_BOT_TOKEN"),
        (SLACK | {"GANOPS_CHANNEL": ""}, False, "GANOPS_CHANNEL is required"),
        ({"GANOPS_DEPLOYER": "docker"}, False, "GANOPS_DEPLOYER='docker' must be local, kubernetes or kserve"),
        ({"GANOPS_SERVING_DEPLOYMENT": "Bad_Name"}, False, "is not a Kubernetes name"),
        ({"GANOPS_IMAGE": "a b"}, False, "GANOPS_IMAGE='a b' is not an image reference"),
    ],
)  # fmt: skip
def test_each_bad_setting_is_one_line_naming_it(env: dict[str, str], http: bool, line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env, http=http, port=3000)
    message = str(info.value)
    assert line in message
    assert "\n" not in message


def test_the_cli_stops_with_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "GANOPS_APPROVAL_TTL": "abc", "GANOPS_STATE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "ganops.bot.cli", "bot"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "ganops: GANOPS_APPROVAL_TTL='abc' is not a duration (try 24h, 90m or 3600)\n"
    )
    assert proc.stdout == ""


def test_bad_flags_are_one_line_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ganops.bot.__main__ import main

    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--port", "http"]) == 2
    assert capsys.readouterr().err == "ganops: argument --port: invalid int value: 'http'\n"
    assert main(["--http"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_pipeline_pods_may_get_their_own_mlflow_url() -> None:
    from ganops.bot.services import _launcher_options

    local = load_settings({"GANOPS_PIPELINE_MLFLOW_URI": "http://mlflow.mlflow:5000"})
    assert local.pipeline_mlflow_uri == "http://mlflow.mlflow:5000"
    assert "pipeline_mlflow_uri" not in _launcher_options(local)  # the local runner shares it
    remote = load_settings(
        {"KFP_HOST": "http://kfp:8888", "GANOPS_PIPELINE_MLFLOW_URI": "http://mlflow.mlflow:5000"}
    )
    assert _launcher_options(remote)["pipeline_mlflow_uri"] == "http://mlflow.mlflow:5000"
    with pytest.raises(ConfigError, match="GANOPS_PIPELINE_MLFLOW_URI"):
        load_settings({"GANOPS_PIPELINE_MLFLOW_URI": "not a url"})


def test_shutdown_grace_is_a_duration_covering_a_rollout_and_its_rollback() -> None:
    assert load_settings({}).shutdown_grace_s == 1260
    assert load_settings({"GANOPS_SHUTDOWN_GRACE": "15m"}).shutdown_grace_s == 900
    with pytest.raises(ConfigError, match="GANOPS_SHUTDOWN_GRACE='soon' is not a duration"):
        load_settings({"GANOPS_SHUTDOWN_GRACE": "soon"})


def test_capture_is_off_by_default_and_passed_to_the_local_server_when_on(
    tmp_path: Path,
) -> None:
    from ganops.bot.services import capture_args

    off = load_settings({"GANOPS_STATE_DIR": str(tmp_path)})
    assert off.capture_rate == 0.0
    assert off.capture_uri == str(tmp_path.resolve() / "captured")
    assert off.drift_min_captured == 64
    assert capture_args(off) == []
    on = load_settings(
        {"GANOPS_CAPTURE_RATE": "0.5", "GANOPS_CAPTURE_URI": "s3://b/c", "GANOPS_CAPTURE_DAYS": "7"}
    )
    assert capture_args(on) == [
        "--capture-rate=0.5",
        "--capture-uri=s3://b/c",
        "--capture-days=7",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GANOPS_CAPTURE_RATE", "1.5"),
        ("GANOPS_CAPTURE_DAYS", "soon"),
        ("GANOPS_DRIFT_MIN_CAPTURED", "0"),
    ],
)
def test_bad_capture_settings_stop_start_up(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_the_kserve_target_is_built_from_the_settings() -> None:
    from ganops.bot.services import kube_target
    from ganops.pipeline.deploy import KServeTarget

    env = {
        "GANOPS_DEPLOY_TARGET": "kserve",
        "GANOPS_SERVING_NAMESPACE": "models",
        "GANOPS_INFERENCE_SERVICE": "stylizer",
        "GANOPS_KSERVE_MODE": "rawdeployment",
        "GANOPS_KSERVE_SERVICE_ACCOUNT": "s3-reader",
        "GANOPS_IMAGE": "registry/ganops-trainer:1.2",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
        "GANOPS_PIPELINE_MLFLOW_URI": "http://mlflow.mlflow:5000",
    }
    settings = load_settings(env)
    assert settings.deployer == "kserve"
    assert kube_target(settings) == KServeTarget(
        namespace="models",
        name="stylizer",
        image="registry/ganops-trainer:1.2",
        mlflow_uri="http://mlflow.mlflow:5000",
        mode="RawDeployment",
        service_account="s3-reader",
    )
    assert load_settings({"GANOPS_DEPLOYER": "kserve"}).deployer == "kserve"


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"GANOPS_DEPLOYER": "kubernetes", "GANOPS_DEPLOY_TARGET": "kserve"}, "disagree; set one"),
        ({"GANOPS_DEPLOY_TARGET": "helm"}, "GANOPS_DEPLOY_TARGET='helm' must be local, kubernetes"),
        ({"GANOPS_KSERVE_MODE": "ModelMesh"}, "must be Serverless or RawDeployment"),
        ({"GANOPS_INFERENCE_SERVICE": "Bad_Name"}, "is not a Kubernetes name"),
    ],
)
def test_bad_kserve_settings_are_one_line(env: dict[str, str], line: str) -> None:
    with pytest.raises(ConfigError, match=line.replace("(", r"\(")):
        load_settings(env)


def test_canary_steps_default_to_10_50_100_of_ten_minutes() -> None:
    s = load_settings({})
    assert (s.canary_steps, s.canary_step_s) == ((10, 50, 100), 600.0)
    s = load_settings({"GANOPS_CANARY_STEPS": " 5, 25,100", "GANOPS_CANARY_STEP_MINUTES": "0.5"})
    assert (s.canary_steps, s.canary_step_s) == ((5, 25, 100), 30.0)
    assert load_settings({"GANOPS_CANARY_STEPS": "100"}).canary_steps == (100,)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GANOPS_CANARY_STEPS", "10,50"),  # never reaches 100
        ("GANOPS_CANARY_STEPS", "50,10,100"),  # not rising
        ("GANOPS_CANARY_STEPS", "0,100"),
        ("GANOPS_CANARY_STEPS", "ten,100"),
        ("GANOPS_CANARY_STEP_MINUTES", "0"),
        ("GANOPS_CANARY_STEP_MINUTES", "soon"),
    ],
)
def test_bad_canary_settings_are_one_line_naming_them(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({name: value})
    assert name in str(info.value)
    assert "\n" not in str(info.value)
