"""A real PostgreSQL server for the tests: Debian's `postgresql` binaries, `initdb` and
`pg_ctl` into a temp folder, on a loopback port (as the `postgres` user when run as root:
`initdb` refuses root). One server per test session; one database per test.

`scripts/ensure-postgresql.sh` (a dependency of `make test`) installs the package.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ganops.bot.store import Store

PG_USER = "postgres"


def pg_bindir() -> Path | None:
    """Where `initdb` and `pg_ctl` are: Debian's newest /usr/lib/postgresql/N/bin, else PATH."""
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted(
            (p for p in root.iterdir() if (p / "bin" / "initdb").exists()),
            key=lambda p: int(p.name) if p.name.isdigit() else 0,
        )
        if versions:
            return versions[-1] / "bin"
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    bindir: Path
    workdir: Path
    port: int
    as_postgres: bool

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A fresh empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        _run(
            self,
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.workdir / "data"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            check=False,
        )
        shutil.rmtree(self.workdir, ignore_errors=True)


def _run(server_or_root: PostgresServer | bool, argv: list[str], check: bool = True) -> None:
    as_postgres = (
        server_or_root.as_postgres if isinstance(server_or_root, PostgresServer) else server_or_root
    )
    if as_postgres:
        argv = ["runuser", "-u", PG_USER, "--", *argv]
    subprocess.run(argv, check=check, capture_output=True, timeout=120)


def start_postgres(bindir: Path) -> PostgresServer:
    """initdb + pg_ctl start in a new temp folder; fsync off (tests), loopback only."""
    workdir = Path(tempfile.mkdtemp(prefix="ganops-pg-"))
    as_postgres = os.geteuid() == 0
    if as_postgres:
        pw = pwd.getpwnam(PG_USER)
        os.chown(workdir, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    data = workdir / "data"
    _run(
        as_postgres,
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            PG_USER,
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
    )
    options = (
        f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
        "-c shared_buffers=32MB"
    )
    server = PostgresServer(bindir=bindir, workdir=workdir, port=port, as_postgres=as_postgres)
    _run(
        as_postgres,
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(workdir / "log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
    )
    return server


# --- running a test on both backends ------------------------------------------------------

_BACKEND: dict[str, str | None] = {"url": None}


def set_backend_url(url: str | None) -> None:
    _BACKEND["url"] = url


def backend_url() -> str | None:
    """The current test's PostgreSQL URL under `both_backends`, or None for SQLite."""
    return _BACKEND["url"]


def backend_store(state_dir: Path) -> Store:
    """The store of the backend the current test runs on (`both_backends` in conftest):
    SQLite in `state_dir`, or this test's PostgreSQL database."""
    return Store(state_dir, _BACKEND["url"])
