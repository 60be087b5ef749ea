"""Which `Db` a process opens: the factory over `pipeline.db`'s port and its two
implementations (which import the port, so the factory cannot live beside it)."""

from __future__ import annotations

from pathlib import Path

from ganops.pipeline.db import Db, is_postgres_url


def open_db(state_dir: Path, database_url: str | None = None) -> Db:
    """PostgreSQL when `database_url` is a postgresql:// URL, else `<state_dir>/ganops.db`."""
    if database_url:
        if not is_postgres_url(database_url):
            raise ValueError("GANOPS_DATABASE_URL must start with postgresql:// or postgres://")
        # psycopg is imported only by a process that asks for PostgreSQL.
        from ganops.pipeline.postgres import PostgresDb

        return PostgresDb(database_url)
    from ganops.pipeline.sqlite import SqliteDb

    return SqliteDb(state_dir)
