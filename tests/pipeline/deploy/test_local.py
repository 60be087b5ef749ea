"""LocalDeployer with real local processes: a stand-in model server that answers /healthz,
/readyz and /model on loopback. Its model URI decides how it behaves: "crash" exits at once,
"broken" stays up but never gets ready (a model that fails to load behind a readiness probe).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ganops.pipeline.deploy import make_deployer
from ganops.pipeline.deploy.local import STARTING, LocalDeployer, default_server_cmd
from ganops.pipeline.ports import Served
from tests.fakes.processes import running_with_arg
from tests.fakes.slack import eventually

pytestmark = pytest.mark.slow  # starts real server processes

STUB = textwrap.dedent(
    """
    import argparse, http.server, os, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("--model-uri"); p.add_argument("--port", type=int)
    a = p.parse_args()
    if "crash" in a.model_uri:
        print("error: cannot load model", a.model_uri, flush=True)
        sys.exit(3)
    loaded = time.monotonic() + 0.3
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ready = "broken" not in a.model_uri and time.monotonic() > loaded
            code, body = {
                "/healthz": (200, "ok"),
                "/readyz": (200 if ready else 503, "ready" if ready else "loading"),
                "/model": (200, a.model_uri + " " + os.environ.get("MLFLOW_TRACKING_URI", "")),
            }.get(self.path, (404, "no"))
            self.send_response(code); self.end_headers(); self.wfile.write(body.encode())
        def log_message(self, *args):
            pass
    print("serving", a.model_uri, "on", a.port, flush=True)
    http.server.HTTPServer(("127.0.0.1", a.port), H).serve_forever()
    """
)


@pytest.fixture
def stub_cmd(tmp_path: Path) -> list[str]:
    script = tmp_path / "stub_serve.py"
    script.write_text(STUB)
    return [sys.executable, str(script), "--model-uri", "{model_uri}", "--port", "{port}"]


@pytest.fixture
def deployer(tmp_path: Path, stub_cmd: list[str]) -> Iterator[LocalDeployer]:
    d = LocalDeployer(
        tmp_path / "state", "sqlite:///mlflow.db", server_cmd=stub_cmd, ready_timeout_s=3
    )
    yield d
    d.stop()


def served_model(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/model", timeout=5) as resp:
        body: str = resp.read().decode()
    return body


def test_default_command_is_ganops_serve() -> None:
    cmd = default_server_cmd()
    assert cmd[-5:] == ["serve", "--model-uri", "{model_uri}", "--port", "{port}"]
    assert cmd[0].endswith("ganops") or cmd[1:3] == ["-m", "ganops.bot.cli"]


def test_factory_without_kube_is_local(tmp_path: Path) -> None:
    assert isinstance(make_deployer(tmp_path, "sqlite:///x.db", None), LocalDeployer)


def test_a_good_version_goes_live_and_replaces_the_old(deployer: LocalDeployer) -> None:
    assert deployer.current("cut") is None
    first = deployer.deploy("cut", "1", "models:/ganops-cut/1")
    assert first.ok, first.message
    old = deployer.serving()
    assert old is not None
    assert served_model(old.port) == "models:/ganops-cut/1 sqlite:///mlflow.db"
    second = deployer.deploy("cut", "2", "models:/ganops-cut/2")
    assert second.ok, second.message
    assert second.previous_version == "1"
    new = deployer.serving()
    assert new is not None
    assert new.port != old.port
    assert served_model(new.port).startswith("models:/ganops-cut/2")
    assert deployer.current("cut") == "2"
    assert deployer.current("cyclegan") is None
    assert deployer.served("cut") == Served("cut", "2", "models:/ganops-cut/2", settled=True)
    assert deployer.served("cyclegan") is None
    recorded = json.loads((deployer.dir / "current.json").read_text())
    assert (recorded["pid"], recorded["port"], recorded["version"]) == (new.pid, new.port, "2")
    targets = json.loads((deployer.dir / "targets.json").read_text())
    assert targets[0]["targets"] == [f"127.0.0.1:{new.port}"]
    with pytest.raises(OSError, match="Connection refused"):  # the old one is gone
        served_model(old.port)
    assert Path(new.log).read_text().startswith("serving models:/ganops-cut/2")


@pytest.mark.parametrize(("uri", "why"), [("crash", "the server exited"), ("broken", "/readyz")])
def test_a_broken_version_is_rolled_back(deployer: LocalDeployer, uri: str, why: str) -> None:
    assert deployer.deploy("cut", "1", "models:/ganops-cut/1").ok
    before = deployer.serving()
    assert before is not None
    result = deployer.deploy("cut", "2", f"models:/ganops-cut/2-{uri}")
    assert not result.ok
    assert result.rolled_back
    assert result.previous_version == "1"
    assert result.model_uri == "models:/ganops-cut/1"
    assert why in result.message
    assert "v1 keeps serving" in result.message
    if uri == "crash":
        assert "cannot load model" in result.message  # the log's last line says why
    assert deployer.serving() == before
    assert served_model(before.port).startswith("models:/ganops-cut/1")
    assert deployer.current("cut") == "1"
    assert running_with_arg(f"models:/ganops-cut/2-{uri}") == []  # the failed one was killed


def test_a_first_deploy_that_fails_serves_nothing(deployer: LocalDeployer) -> None:
    result = deployer.deploy("cut", "1", "models:/ganops-cut/1-crash")
    assert not result.ok
    assert not result.rolled_back
    assert "nothing was serving" in result.message
    assert deployer.current("cut") is None


def test_a_restarted_bot_re_adopts_the_running_server(
    tmp_path: Path, stub_cmd: list[str], deployer: LocalDeployer
) -> None:
    assert deployer.deploy("cut", "1", "models:/ganops-cut/1").ok
    reborn = LocalDeployer(tmp_path / "state", server_cmd=stub_cmd, ready_timeout_s=3)
    assert reborn.current("cut") == "1"
    old = reborn.serving()
    assert old is not None
    result = reborn.deploy("cut", "2", "models:/ganops-cut/2")
    assert result.ok
    assert result.previous_version == "1"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(old.pid):
        time.sleep(0.05)
    assert not _alive(old.pid)  # the adopted server was stopped on the switch
    reborn.stop()
    assert reborn.current("cut") is None


def test_a_dead_server_is_not_adopted(deployer: LocalDeployer) -> None:
    assert deployer.deploy("cut", "1", "models:/ganops-cut/1").ok
    record = deployer.serving()
    assert record is not None
    os.killpg(record.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and deployer.current("cut") is not None:
        time.sleep(0.05)
    assert deployer.current("cut") is None


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_server_left_starting_by_a_killed_deployer_is_stopped_by_the_next_deploy(
    tmp_path: Path, stub_cmd: list[str], deployer: LocalDeployer
) -> None:
    assert deployer.deploy("cut", "1", "models:/ganops-cut/1").ok
    script = (
        "import sys; from pathlib import Path; from ganops.pipeline.deploy.local import LocalDeployer; "
        "LocalDeployer(Path(sys.argv[1]), server_cmd=sys.argv[2:], ready_timeout_s=600)"
        ".deploy('cut', '2', 'models:/ganops-cut/2-broken')"
    )
    doomed = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "state"), *stub_cmd])
    try:
        starting = eventually(lambda: _read_json(deployer.dir / STARTING), timeout=30)
        assert running_with_arg("models:/ganops-cut/2-broken") == [starting["pid"]]
    finally:
        doomed.kill()  # the bot dies while its new server is still loading
        doomed.wait()
    assert deployer.current("cut") == "1"  # the old one kept serving
    result = deployer.deploy("cut", "3", "models:/ganops-cut/3")
    assert result.ok, result.message
    assert running_with_arg("models:/ganops-cut/2-broken") == []
    assert not (deployer.dir / STARTING).exists()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
