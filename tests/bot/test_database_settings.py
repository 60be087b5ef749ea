"""GANOPS_DATABASE_URL and GANOPS_OUTBOX_LEASE: validated at start-up, the URL kept secret."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ganops.bot.errors import ConfigError
from ganops.bot.settings import load_settings
from tests.fakes.prometheus import REPO, free_port

URL = "postgresql://ganops:s3cret-pw@db.example.internal:5432/ganops"


def test_sqlite_by_default_postgresql_when_set_and_the_url_stays_secret() -> None:
    assert load_settings({}).database_url is None
    assert load_settings({}).outbox_lease_s == 30
    s = load_settings({"GANOPS_DATABASE_URL": URL, "GANOPS_OUTBOX_LEASE": "1m"})
    assert s.database_url is not None
    assert s.database_url.reveal() == URL
    assert s.outbox_lease_s == 60
    assert "s3cret-pw" not in repr(s)
    assert "s3cret-pw" not in str(s)


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "sqlite:///x.db", "db.example.internal:5432", "postgresql//u@h/db"]
)
def test_a_url_that_is_not_postgresql_stops_start_up(url: str) -> None:
    with pytest.raises(ConfigError, match="GANOPS_DATABASE_URL must be a postgresql://"):
        load_settings({"GANOPS_DATABASE_URL": url})


def test_an_unreachable_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: refused at once, on loopback
    env = os.environ | {
        "GANOPS_DATABASE_URL": f"postgresql://ganops:pw@127.0.0.1:{port}/ganops",
        "GANOPS_STATE_DIR": str(tmp_path),
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "GANOPS_CHANNEL": "C1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ganops.bot", "--http", "--port", str(free_port())],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("ganops: cannot use GANOPS_DATABASE_URL: ")
    assert "pw@" not in line


def test_the_cli_lists_decides_and_audits_in_the_replicas_database(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fresh_mlflow: Callable[[Path], str],
) -> None:
    from ganops.bot.approvals.admin import approvals_main, os_user
    from ganops.bot.approvals.book import ApprovalBook
    from ganops.bot.store import Store
    from tests.fakes.approvals import MemoryRegistry, RecordingDeployer

    monkeypatch.setenv("GANOPS_DATABASE_URL", database_url)
    monkeypatch.setenv("GANOPS_STATE_DIR", str(tmp_path / "cli-state"))  # empty: not read
    monkeypatch.setenv("GANOPS_APPROVERS", "U_BOB")
    monkeypatch.setenv("GANOPS_CLI_USERS", f"{os_user()}=U_BOB")  # the CLI votes as its caller
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_mlflow(tmp_path / "mlflow.db"))
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "KFP_HOST", "GANOPS_DEPLOYER"):
        monkeypatch.delenv(name, raising=False)
    replica = Store(tmp_path / "replica-state", database_url)
    book = ApprovalBook(replica, MemoryRegistry(), RecordingDeployer(), approvers=frozenset())
    approval_id = book.request(
        model="cut", version="4", model_uri="models:/ganops-cut/4", requested_by="U_ALICE"
    ).approval_id
    assert approvals_main(["list"]) == 0
    assert capsys.readouterr().out.startswith(f"{approval_id}  deploy of cut v4")
    assert approvals_main(["decide", approval_id, "reject", "--user", "U_BOB"]) == 0
    assert capsys.readouterr().out.strip() == "Rejected deploy of cut v4."
    assert approvals_main(["audit", "5"]) == 0
    assert f"U_BOB  decide  {approval_id}  rejected" in capsys.readouterr().out
    decided = book.get(approval_id)
    assert decided is not None
    assert decided.state == "rejected"  # the replica sees the CLI's decision
    replica.close()
