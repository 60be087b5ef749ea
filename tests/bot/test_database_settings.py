"""GANOPS_DATABASE_URL and GANOPS_OUTBOX_LEASE: validated at start-up, the URL kept secret."""

from __future__ import annotations

import os
import subprocess
import sys
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
