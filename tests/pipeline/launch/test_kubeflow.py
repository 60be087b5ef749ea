"""KubeflowLauncher through the real kfp.Client against a local KFP v2beta1 REST server."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ganops.pipeline.launch import make_launcher
from ganops.pipeline.launch.kubeflow import KubeflowLauncher
from ganops.pipeline.ports import (
    PIPELINE_STEPS,
    ConcurrentRunError,
    InvalidParamsError,
    RunParams,
    UnknownRunError,
    UpstreamError,
)
from tests.fakes.kfp import FakeKfp, serve_fake_kfp

IMAGE = "registry.example/ganops-trainer:1.2.3"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pipeline, compiled once for this module's image by the launcher's own cache
    (`KubeflowLauncher.package`): a compile takes seconds, and every test launches the same."""
    state = tmp_path_factory.mktemp("compiled")
    launcher = make_launcher(state, "http://127.0.0.1:9", "", IMAGE)  # nothing is sent
    assert isinstance(launcher, KubeflowLauncher)
    launcher.package(0)
    return state / "kfp"


@pytest.fixture(autouse=True)
def _compiled_once(tmp_path: Path, compiled: Path) -> None:
    """Each test's launcher finds the module's compile in its cache (its state dir)."""
    shutil.copytree(compiled, tmp_path / "state" / "kfp")


@pytest.fixture
def kfp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, FakeKfp]]:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/kfp/context.json from the host
    with serve_fake_kfp() as served:
        yield served


def _launcher(tmp_path: Path, host: str) -> KubeflowLauncher:
    launcher = make_launcher(tmp_path / "state", host, "", IMAGE)
    assert isinstance(launcher, KubeflowLauncher)
    return launcher


@pytest.mark.slow
def test_launch_submits_the_compiled_pipeline_with_parameters(
    tmp_path: Path, kfp: tuple[str, FakeKfp]
) -> None:
    host, fake = kfp
    launcher = _launcher(tmp_path, host)
    assert fake.requests == []  # the client is created lazily: no call before first use
    launched = launcher.launch(RunParams(epochs=2, lr=1e-3, gpus=2), "req-1")
    assert launched.created
    assert launched.url == f"{host}/#/runs/details/{launched.run_id}"
    [run] = fake.runs.values()
    assert run["run_id"] == launched.run_id
    params = run["runtime_config"]["parameters"]
    assert (params["epochs"], params["lr"], params["gpus"], params["preset"]) == (
        2,
        1e-3,
        2,
        "full",
    )
    # With Kubernetes settings, KFP sends the pipeline spec and the platform spec together.
    spec, platform = run["pipeline_spec"]["pipeline_spec"], run["pipeline_spec"]["platform_spec"]
    assert "finalize" in spec["root"]["dag"]["tasks"]  # the exit handler wraps the body
    train_k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert train_k8s["tolerations"][0]["key"] == "nvidia.com/gpu"
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {IMAGE}
    [experiment] = fake.experiments.values()
    assert run["experiment_id"] == experiment["experiment_id"]
    assert experiment["display_name"] == "ganops"


def test_same_request_id_gives_one_run_even_after_a_restart(
    tmp_path: Path, kfp: tuple[str, FakeKfp]
) -> None:
    host, fake = kfp
    first = _launcher(tmp_path, host).launch(RunParams(), "slack-retry")
    again = _launcher(tmp_path, host).launch(RunParams(), "slack-retry")  # a new process
    assert (again.run_id, again.created, again.url) == (first.run_id, False, first.url)
    assert len(fake.runs) == 1


def test_one_active_run_per_model(tmp_path: Path, kfp: tuple[str, FakeKfp]) -> None:
    host, fake = kfp
    launcher = _launcher(tmp_path, host)
    first = launcher.launch(RunParams(model="cut"), "a")
    fake.set_state(first.run_id, "RUNNING")
    with pytest.raises(ConcurrentRunError) as err:
        launcher.launch(RunParams(model="cut"), "b")
    assert err.value.run_id == first.run_id
    assert launcher.launch(RunParams(model="cyclegan"), "c").created  # other models may run
    fake.set_state(first.run_id, "SUCCEEDED")
    assert launcher.launch(RunParams(model="cut"), "d").created
    assert len(fake.runs) == 3


def test_status_follows_the_task_details(tmp_path: Path, kfp: tuple[str, FakeKfp]) -> None:
    host, fake = kfp
    launcher = _launcher(tmp_path, host)
    run_id = launcher.launch(RunParams(), "r").run_id
    assert launcher.status(run_id).state == "queued"
    fake.set_state(run_id, "RUNNING")
    fake.set_tasks(
        run_id,
        {
            "ingest": "SUCCEEDED",
            "validate": "SUCCEEDED",
            "train": "RUNNING",
        },
    )
    st = launcher.status(run_id)
    assert (st.state, st.current_step, st.steps_done) == ("running", "train", 2)
    assert st.request_id == "r"
    assert st.url
    assert run_id in st.url


@pytest.mark.parametrize(
    ("gate_task", "auto_deploy", "state"),
    [
        ("gate-pass", False, "awaiting_approval"),
        ("gate-reject", False, "gated"),
        ("gate-pass", True, "deployed"),
    ],
)
def test_final_state_comes_from_the_gate_branch_that_ran(
    tmp_path: Path, kfp: tuple[str, FakeKfp], gate_task: str, auto_deploy: bool, state: str
) -> None:
    host, fake = kfp
    launcher = _launcher(tmp_path, host)
    run_id = launcher.launch(RunParams(auto_deploy=auto_deploy), "r").run_id
    steps = dict.fromkeys(("ingest", "validate", "train", "evaluate", "register"), "SUCCEEDED")
    fake.set_tasks(run_id, {**steps, gate_task: "SUCCEEDED", "finalize": "SUCCEEDED"})
    fake.set_state(run_id, "SUCCEEDED")
    st = launcher.status(run_id)
    assert (st.state, st.steps_done, st.final) == (state, len(PIPELINE_STEPS), True)
    assert launcher.status(run_id).state == state  # cached once final


def test_failure_names_the_step_and_its_error(tmp_path: Path, kfp: tuple[str, FakeKfp]) -> None:
    host, fake = kfp
    launcher = _launcher(tmp_path, host)
    run_id = launcher.launch(RunParams(), "r").run_id
    message = "bad data, 1 problem(s): trainA/broken.png: unreadable or corrupt image"
    fake.set_tasks(
        run_id,
        {"ingest": "SUCCEEDED", "validate": "FAILED", "finalize": "SUCCEEDED"},
        errors={"validate": message},
    )
    fake.set_state(run_id, "FAILED", error="the DAG failed")
    st = launcher.status(run_id)
    assert (st.state, st.failed_step) == ("failed", "validate")
    assert st.error is not None
    assert "trainA/broken.png" in st.error


def test_cancel_and_list(tmp_path: Path, kfp: tuple[str, FakeKfp]) -> None:
    host, fake = kfp
    launcher = _launcher(tmp_path, host)
    a = launcher.launch(RunParams(model="cut"), "a").run_id
    b = launcher.launch(RunParams(model="cyclegan"), "b").run_id
    launcher.cancel(a)
    assert ("POST", f"/apis/v2beta1/runs/{a}:terminate") in fake.requests
    assert launcher.status(a).state == "cancelled"
    listed = {st.run_id: st for st in launcher.list_runs(10)}
    assert set(listed) == {a, b}
    assert listed[b].model == "cyclegan"
    assert listed[b].request_id == "b"


def test_unknown_run_and_bad_params(tmp_path: Path, kfp: tuple[str, FakeKfp]) -> None:
    host, fake = kfp
    launcher = _launcher(tmp_path, host)
    with pytest.raises(UnknownRunError):
        launcher.status("no-such-run")
    with pytest.raises(InvalidParamsError, match="epochs"):
        launcher.launch(RunParams(epochs=0), "x")
    assert not fake.runs


def test_unreachable_server_is_an_upstream_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launcher = _launcher(tmp_path, f"http://127.0.0.1:{port}")
    with pytest.raises(UpstreamError, match="Kubeflow Pipelines"):
        launcher.launch(RunParams(), "r")
    # The failed submission does not pin the request id to a run that never existed.
    with pytest.raises(UpstreamError):
        launcher.launch(RunParams(), "r")


def test_multi_user_kubeflow_gets_the_namespace_the_token_and_public_links(
    tmp_path: Path, kfp: tuple[str, FakeKfp]
) -> None:
    from ganops.pipeline.launch.kfp_client import KfpAccess

    host, fake = kfp
    token = tmp_path / "token"
    token.write_text("projected-sa-token")
    launcher = KubeflowLauncher(
        tmp_path / "state",
        host,
        "",
        IMAGE,
        access=KfpAccess(namespace="team-a", token_path=token),
        ui_host="https://kubeflow.example.com/pipeline",
    )
    launched = launcher.launch(RunParams(), "req-mu")
    assert launched.url == f"https://kubeflow.example.com/pipeline/#/runs/details/{launched.run_id}"
    assert set(fake.auth) == {"Bearer projected-sa-token"}  # every call, read from the file
    assert fake.experiments
    launcher.list_runs()
    assert fake.namespaces
    assert set(fake.namespaces) == {"team-a"}
    assert [e.get("namespace") for e in fake.experiments.values()] == ["team-a"]
