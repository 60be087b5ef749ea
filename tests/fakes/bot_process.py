"""`python -m tests.fakes.bot_process`: the real bot process as `ganops bot --http` runs it
(`bot.__main__.serve`: the Bolt app over HTTP, the jobs with start-up reconciliation, the
SIGTERM handler), with two stand-ins that a test can see through and that survive the bot:

- the registry is a JSON file (`FAKE_REGISTRY`), shared with the test as MLflow would be;
- the deployer is the real `LocalDeployer` running `tests/fakes/stub_serve.py`, whose
  readiness the test holds back with files in `FAKE_GATES`.

Settings come from the environment, as for `ganops bot`; `BOT_PORT` is the HTTP port.
With `GANOPS_DATABASE_URL` set, several of these processes are replicas on one PostgreSQL
(outbox, leadership, fencing as `build_services` sets them up). `FAKE_LAUNCHER` names a
`FileLauncher` file that the replicas and the test share (else a `ScriptedLauncher`);
`FAKE_ALERTS` names a JSON list of drift alerts (`FileMetrics`);
`FAKE_OUTBOX_STALL=1` makes this replica's outbox worker claim rows and never carry them out,
as a replica that dies right after its ack would.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ganops.bot.__main__ import on_sigterm, serve
from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.leader import make_leadership
from ganops.bot.outbox import Outbox
from ganops.bot.ports import DriftAlert, MetricsSource, PipelineLauncher
from ganops.bot.runs.record import RunBook
from ganops.bot.services import Services, slack_client
from ganops.bot.settings import load_settings
from ganops.bot.store import Store
from ganops.pipeline.deploy.local import LocalDeployer
from tests.fakes.approvals import FileRegistry
from tests.fakes.launcher import FileLauncher, ScriptedLauncher

STUB = Path(__file__).with_name("stub_serve.py")


def stub_cmd(gates: Path) -> list[str]:
    """The LocalDeployer's server command for the gated stub server."""
    args = ["--model-uri", "{model_uri}", "--port", "{port}", "--gates", str(gates)]
    return [sys.executable, str(STUB), *args]


def main() -> int:
    settings = load_settings(os.environ, http=True, port=int(os.environ["BOT_PORT"]))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    url = settings.database_url.reveal() if settings.database_url else None
    store = Store(settings.state_dir, url)
    leader = make_leadership(url)
    registry = FileRegistry(path=Path(os.environ["FAKE_REGISTRY"]))
    gates = Path(os.environ["FAKE_GATES"])
    deployer = LocalDeployer(settings.state_dir, server_cmd=stub_cmd(gates), ready_timeout_s=120)
    approvals = ApprovalBook(store, registry, deployer, approvers=frozenset(settings.approvers))
    services = Services(
        store=store,
        runbook=RunBook(store),
        launcher=_launcher(),
        registry=registry,
        slack=slack_client(settings, leader),
        approvals=approvals,
        deployer=deployer,
        outbox=Outbox(store),
        leader=leader,
        metrics=_metrics(),
    )
    if os.environ.get("FAKE_OUTBOX_STALL"):
        _stall_outbox()
    signal.signal(signal.SIGTERM, on_sigterm)
    return serve(settings, services, host="127.0.0.1")


def _launcher() -> PipelineLauncher:
    shared = os.environ.get("FAKE_LAUNCHER")
    return FileLauncher(Path(shared)) if shared else ScriptedLauncher()


class FileMetrics:
    """A `MetricsSource` whose firing drift alerts are a JSON list in `FAKE_ALERTS`, written
    by the test (as Prometheus would answer every replica alike)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def firing_drift_alerts(self) -> list[DriftAlert]:
        try:
            return [DriftAlert(**a) for a in json.loads(self.path.read_text())]
        except FileNotFoundError:
            return []

    def score_history(
        self, model: str, version: str, hours: float = 3.0
    ) -> list[tuple[float, float]]:
        now = time.time()
        return [(now - 60 * i, 1.5) for i in range(5, 0, -1)]


def _metrics() -> MetricsSource | None:
    path = os.environ.get("FAKE_ALERTS")
    return FileMetrics(Path(path)) if path else None


def _stall_outbox() -> None:
    """Claimed rows hang here until the process is killed (their lease runs out then)."""
    import threading

    from ganops.bot import outbox_worker

    def stuck(app: object, handlers: object = None) -> Callable[[object], None]:
        def run(row: object) -> None:
            print(f"outbox: stalled on {row}", file=sys.stderr, flush=True)
            threading.Event().wait()

        return run

    outbox_worker.dispatcher = stuck  # type: ignore[assignment]


if __name__ == "__main__":
    sys.exit(main())
