"""The LocalDeployer's canary, with real processes: `tests/fakes/stub_serve.py` servers behind
the local split (`pipeline.deploy.split`), driven through the Deployer port's
set_canary / abort_canary / canary and a second LocalDeployer on the same state dir."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from ganops.pipeline.deploy.local import STARTING, LocalDeployer
from ganops.pipeline.ports import CanaryServed, DeployError, Served
from tests.fakes.bot_process import stub_cmd
from tests.fakes.processes import running_with_arg
from tests.fakes.slack import eventually

pytestmark = pytest.mark.slow  # starts real server processes

V1, V2, V3 = "models:/ganops-cut/1", "models:/ganops-cut/2", "models:/ganops-cut/3"


@pytest.fixture
def gates(tmp_path: Path) -> Path:
    path = tmp_path / "gates"
    path.mkdir()
    return path


@pytest.fixture
def deployer(tmp_path: Path, gates: Path) -> Iterator[LocalDeployer]:
    d = LocalDeployer(tmp_path / "state", server_cmd=stub_cmd(gates), ready_timeout_s=5)
    yield d
    d.stop()


@pytest.fixture
def canary10(deployer: LocalDeployer) -> LocalDeployer:
    """v1 stable, v2 a canary at 10%."""
    assert deployer.deploy("cut", "1", V1).ok
    result = deployer.set_canary("cut", "2", V2, 10)
    assert result.ok, result.message
    return deployer


def keepalive(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)


def served_by(conn: http.client.HTTPConnection, n: int) -> Counter[str]:
    """Who answered each of `n` requests sent on the one connection `conn` (never reopened)."""
    counts: Counter[str] = Counter()
    conn.request("GET", "/model")
    conn.getresponse().read()
    sock = conn.sock
    for _ in range(n):
        conn.request("GET", "/model")
        resp = conn.getresponse()
        counts[resp.read().decode()] += 1
        assert resp.status == 200
    assert conn.sock is sock  # one keep-alive connection throughout
    return counts


def routes(d: LocalDeployer) -> Any:
    return json.loads((d.dir / "routes.json").read_text())


def alive(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone(pid: int) -> bool:
    return bool(eventually(lambda: not alive(pid), timeout=10))


@pytest.mark.parametrize("percent", [10, 50])
def test_each_request_on_one_keepalive_connection_is_split(
    deployer: LocalDeployer, percent: int
) -> None:
    assert deployer.deploy("cut", "1", V1).ok
    endpoint = deployer.endpoint()
    stable = deployer.serving()
    assert endpoint is not None
    assert stable is not None
    assert endpoint != stable.url
    assert deployer.set_canary("cut", "2", V2, percent).ok
    assert deployer.endpoint() == endpoint  # clients keep their address
    n = 600
    counts = served_by(keepalive(endpoint), n)
    assert set(counts) == {V1, V2}
    mean, sd = n * percent / 100, (n * percent / 100 * (1 - percent / 100)) ** 0.5
    assert abs(counts[V2] - mean) < 5 * sd, counts  # binomial: fails ~1 in 1.7 million


def test_bodies_headers_and_status_codes_pass_unchanged(canary10: LocalDeployer) -> None:
    endpoint = canary10.endpoint()
    assert endpoint is not None
    body = bytes(range(256)) * 32 + b"\x00\r\n\r\n" + os.urandom(6 * 1024 * 1024)
    headers = {"Inference-Header-Content-Length": "123", "X-Custom": "a, b;c"}
    with requests.Session() as session:
        for _ in range(5):
            resp = session.post(f"{endpoint}/echo", data=body, headers=headers, timeout=30)
            assert resp.status_code == 200
            assert resp.content == body
            assert resp.headers["X-Echo-Inference-Header-Content-Length"] == "123"
            assert resp.headers["X-Echo-X-Custom"] == "a, b;c"
            assert resp.headers["Content-Type"] == "application/octet-stream"
            assert resp.headers["X-Served-By"] in (V1, V2)  # the backend's own header
        # A chunked upload is forwarded whole.
        chunks = [b"\x01\x02", b"", b"\xff" * 70000, b"end"]
        resp = session.post(f"{endpoint}/echo", data=iter(chunks), timeout=30)
        assert resp.content == b"".join(chunks)
        assert session.get(f"{endpoint}/status/418", timeout=10).status_code == 418
        assert session.get(f"{endpoint}/nope", timeout=10).status_code == 404


def test_a_backend_that_is_down_is_a_clear_502(deployer: LocalDeployer) -> None:
    assert deployer.deploy("cut", "1", V1).ok
    endpoint, stable = deployer.endpoint(), deployer.serving()
    assert endpoint is not None
    assert stable is not None
    health = requests.get(f"{endpoint}/healthz", timeout=5)
    assert health.json() == {"ok": True, "stable": stable.url, "canary": None, "percent": 0}
    os.killpg(stable.pid, signal.SIGKILL)
    gone(stable.pid)
    resp = requests.get(f"{endpoint}/model", timeout=5)
    assert resp.status_code == 502
    assert f"the stable model server {stable.url} is down" in resp.text
    assert requests.get(f"{endpoint}/healthz", timeout=5).status_code == 200  # its own


def test_the_percent_moves_then_the_canary_is_promoted(canary10: LocalDeployer) -> None:
    d = canary10
    stable, endpoint = d.serving(), d.endpoint()
    assert stable is not None
    assert endpoint is not None
    assert d.canary("cut") == CanaryServed("cut", "2", V2, 10, "1")
    assert d.canary("cyclegan") is None
    canary_pid = json.loads((d.dir / "canary.json").read_text())["pid"]

    moved = d.set_canary("cut", "2", V2, 50)
    assert moved.ok, moved.message
    assert d.canary("cut") == CanaryServed("cut", "2", V2, 50, "1")
    assert json.loads((d.dir / "canary.json").read_text())["pid"] == canary_pid  # not restarted
    assert routes(d)["percent"] == 50

    promoted = d.set_canary("cut", "2", V2, 100)
    assert promoted.ok, promoted.message
    assert (promoted.version, promoted.previous_version) == ("2", "1")
    current = json.loads((d.dir / "current.json").read_text())
    assert (current["pid"], current["version"]) == (canary_pid, "2")  # the same process
    assert d.served("cut") == Served("cut", "2", V2, settled=True)
    assert d.canary("cut") is None
    assert not (d.dir / "canary.json").exists()
    assert routes(d) == {"stable": current["url"], "canary": None, "percent": 0}
    assert gone(stable.pid)  # the old stable server was stopped
    assert d.endpoint() == endpoint
    assert served_by(keepalive(endpoint), 50) == Counter({V2: 50})


def test_abort_stops_the_canary_and_stable_takes_all(canary10: LocalDeployer) -> None:
    d = canary10
    canary_pid = json.loads((d.dir / "canary.json").read_text())["pid"]
    result = d.abort_canary("cut")
    assert result.ok, result.message
    assert result.rolled_back
    assert (result.version, result.model_uri) == ("1", V1)
    assert gone(canary_pid)
    assert d.canary("cut") is None
    assert not (d.dir / "canary.json").exists()
    assert routes(d)["canary"] is None
    endpoint = d.endpoint()
    assert endpoint is not None
    assert served_by(keepalive(endpoint), 50) == Counter({V1: 50})
    again = d.abort_canary("cut")  # nothing to do
    assert again.ok
    assert not again.rolled_back
    assert "no canary" in again.message


def test_a_canary_that_never_gets_ready_is_removed(deployer: LocalDeployer, gates: Path) -> None:
    assert deployer.deploy("cut", "1", V1).ok
    (gates / "hold-2").touch()
    deployer.ready_timeout_s = 1.5
    result = deployer.set_canary("cut", "2", V2, 10)
    assert not result.ok
    assert result.rolled_back
    assert "/readyz not ready" in result.message
    assert "v1 keeps all the traffic" in result.message
    assert (result.model_uri, result.previous_version) == (V1, "1")
    assert deployer.canary("cut") is None
    assert routes(deployer)["canary"] is None
    assert not (deployer.dir / STARTING).exists()
    assert running_with_arg(V2, str(gates)) == []
    endpoint = deployer.endpoint()
    assert endpoint is not None
    assert served_by(keepalive(endpoint), 20) == Counter({V1: 20})


def test_a_canary_with_nothing_stable_takes_all_the_traffic(deployer: LocalDeployer) -> None:
    result = deployer.set_canary("cut", "2", V2, 10)
    assert result.ok, result.message
    assert deployer.canary("cut") == CanaryServed("cut", "2", V2, 10, None)
    assert deployer.current("cut") is None
    endpoint = deployer.endpoint()
    assert endpoint is not None
    assert served_by(keepalive(endpoint), 20) == Counter({V2: 20})
    assert deployer.set_canary("cut", "2", V2, 100).ok
    assert deployer.current("cut") == "2"


def test_a_bad_request_framing_is_a_400(canary10: LocalDeployer) -> None:
    endpoint = canary10.endpoint()
    assert endpoint is not None
    conn = keepalive(endpoint)
    conn.putrequest("POST", "/echo")
    conn.putheader("Content-Length", "lots")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 400
    assert b"Content-Length" in resp.read()


def test_another_versions_canary_is_replaced(canary10: LocalDeployer) -> None:
    old_pid = json.loads((canary10.dir / "canary.json").read_text())["pid"]
    assert canary10.set_canary("cut", "3", V3, 20).ok
    assert canary10.canary("cut") == CanaryServed("cut", "3", V3, 20, "1")
    assert gone(old_pid)


def test_deploy_replaces_stable_and_stops_a_running_canary(canary10: LocalDeployer) -> None:
    canary_pid = json.loads((canary10.dir / "canary.json").read_text())["pid"]
    assert canary10.deploy("cut", "3", V3).ok
    assert canary10.canary("cut") is None
    assert gone(canary_pid)
    assert routes(canary10)["canary"] is None
    assert canary10.current("cut") == "3"


@pytest.mark.parametrize("then", ["promote", "abort"])
def test_a_restarted_bot_reads_the_canary_and_finishes_it(
    tmp_path: Path, gates: Path, canary10: LocalDeployer, then: str
) -> None:
    endpoint = canary10.endpoint()
    reborn = LocalDeployer(tmp_path / "state", server_cmd=stub_cmd(gates), ready_timeout_s=5)
    assert reborn.canary("cut") == CanaryServed("cut", "2", V2, 10, "1")
    assert reborn.endpoint() == endpoint
    result = (
        reborn.set_canary("cut", "2", V2, 100) if then == "promote" else reborn.abort_canary("cut")
    )
    assert result.ok, result.message
    assert reborn.canary("cut") is None
    assert reborn.current("cut") == ("2" if then == "promote" else "1")
    assert endpoint is not None
    winner = V2 if then == "promote" else V1
    assert served_by(keepalive(endpoint), 20) == Counter({winner: 20})


def test_a_dead_split_is_restarted_on_its_port(canary10: LocalDeployer) -> None:
    endpoint = canary10.endpoint()
    front = json.loads((canary10.dir / "front.json").read_text())
    os.killpg(front["pid"], signal.SIGKILL)
    gone(front["pid"])
    stable = canary10.serving()
    assert stable is not None
    assert canary10.endpoint() == stable.url  # straight to the server
    assert canary10.set_canary("cut", "2", V2, 30).ok
    assert canary10.endpoint() == endpoint
    assert requests.get(f"{endpoint}/healthz", timeout=5).json()["percent"] == 30


def test_prometheus_targets_list_both_tracks(canary10: LocalDeployer) -> None:
    stable = json.loads((canary10.dir / "current.json").read_text())
    canary = json.loads((canary10.dir / "canary.json").read_text())
    targets = json.loads((canary10.dir / "targets.json").read_text())
    assert targets == [
        {
            "targets": [f"127.0.0.1:{stable['port']}"],
            "labels": {"job": "ganops-serve", "track": "stable"},
        },
        {
            "targets": [f"127.0.0.1:{canary['port']}"],
            "labels": {"job": "ganops-serve", "track": "canary"},
        },
    ]
    canary10.abort_canary("cut")
    targets = json.loads((canary10.dir / "targets.json").read_text())
    assert [t["labels"]["track"] for t in targets] == ["stable"]


def test_bad_calls_are_refused_before_anything_starts(canary10: LocalDeployer) -> None:
    for percent in (0, 101, -5):
        with pytest.raises(DeployError, match=r"1\.\.100"):
            canary10.set_canary("cut", "3", V3, percent)
    with pytest.raises(DeployError, match="serves cut"):
        canary10.set_canary("cyclegan", "3", "models:/ganops-cyclegan/3", 10)
    assert canary10.canary("cut") == CanaryServed("cut", "2", V2, 10, "1")


def test_a_canary_left_starting_by_a_killed_deployer_is_stopped_by_the_next_call(
    tmp_path: Path, gates: Path, canary10: LocalDeployer
) -> None:
    (gates / "hold-3").touch()
    script = (
        "import sys; from pathlib import Path; from ganops.pipeline.deploy.local import LocalDeployer; "
        "LocalDeployer(Path(sys.argv[1]), server_cmd=sys.argv[2:], ready_timeout_s=600)"
        ".set_canary('cut', '3', 'models:/ganops-cut/3', 20)"
    )
    state = str(tmp_path / "state")
    doomed = subprocess.Popen([sys.executable, "-c", script, state, *stub_cmd(gates)])
    try:
        starting = eventually(lambda: _read_json(canary10.dir / STARTING), timeout=30)
        assert running_with_arg(V3, str(gates)) == [starting["pid"]]
    finally:
        doomed.kill()  # the bot dies while its canary is still loading
        doomed.wait()
    assert canary10.abort_canary("cut").ok
    assert running_with_arg(V3, str(gates)) == []
    assert running_with_arg(V2, str(gates)) == []
    assert canary10.current("cut") == "1"


def test_servers_a_killed_deployer_was_retiring_are_stopped_and_records_repaired(
    canary10: LocalDeployer,
) -> None:
    """A promotion killed after it wrote current.json: canary.json still names the same
    process, and retiring.json the old stable server that it had not stopped yet."""
    d = canary10
    old = json.loads((d.dir / "current.json").read_text())
    canary = json.loads((d.dir / "canary.json").read_text())
    (d.dir / "retiring.json").write_text(json.dumps([{k: old[k] for k in ("pid", "proc_start")}]))
    (d.dir / "current.json").write_text(json.dumps(canary))
    assert d.canary("cut") is not None  # not repaired yet: nothing ran
    assert d.abort_canary("cut").ok  # the next call repairs first
    assert gone(old["pid"])
    assert alive(canary["pid"])
    assert d.current("cut") == "2"
    assert d.canary("cut") is None
    assert not (d.dir / "retiring.json").exists()
    assert routes(d) == {"stable": canary["url"], "canary": None, "percent": 0}


def test_stop_stops_the_split_and_the_servers(canary10: LocalDeployer) -> None:
    pids = [
        json.loads((canary10.dir / n).read_text())["pid"]
        for n in ("front.json", "current.json", "canary.json")
    ]
    canary10.stop()
    assert all(gone(pid) for pid in pids)
    assert canary10.endpoint() is None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
