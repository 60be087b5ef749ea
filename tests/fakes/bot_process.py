"""`python -m tests.fakes.bot_process`: the real bot process as `ganops bot --http` runs it
(`bot.__main__.serve`: the Bolt app over HTTP, the jobs with start-up reconciliation, the
SIGTERM handler), with two stand-ins that a test can see through and that survive the bot:

- the registry is a JSON file (`FAKE_REGISTRY`), shared with the test as MLflow would be;
- the deployer is the real `LocalDeployer` running `tests/fakes/stub_serve.py`, whose
  readiness the test holds back with files in `FAKE_GATES`.

Settings come from the environment, as for `ganops bot`; `BOT_PORT` is the HTTP port.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from ganops.bot.__main__ import on_sigterm, serve
from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.runs.record import RunBook
from ganops.bot.services import Services, slack_client
from ganops.bot.settings import load_settings
from ganops.bot.store import Store
from ganops.pipeline.deploy.local import LocalDeployer
from tests.fakes.approvals import FileRegistry
from tests.fakes.launcher import ScriptedLauncher

STUB = Path(__file__).with_name("stub_serve.py")


def stub_cmd(gates: Path) -> list[str]:
    """The LocalDeployer's server command for the gated stub server."""
    args = ["--model-uri", "{model_uri}", "--port", "{port}", "--gates", str(gates)]
    return [sys.executable, str(STUB), *args]


def main() -> int:
    settings = load_settings(os.environ, http=True, port=int(os.environ["BOT_PORT"]))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    store = Store(settings.state_dir)
    registry = FileRegistry(path=Path(os.environ["FAKE_REGISTRY"]))
    gates = Path(os.environ["FAKE_GATES"])
    deployer = LocalDeployer(settings.state_dir, server_cmd=stub_cmd(gates), ready_timeout_s=120)
    approvals = ApprovalBook(store, registry, deployer, approvers=frozenset(settings.approvers))
    services = Services(
        store=store,
        runbook=RunBook(store),
        launcher=ScriptedLauncher(),
        registry=registry,
        slack=slack_client(settings),
        approvals=approvals,
        deployer=deployer,
    )
    signal.signal(signal.SIGTERM, on_sigterm)
    return serve(settings, services, host="127.0.0.1")


if __name__ == "__main__":
    sys.exit(main())
