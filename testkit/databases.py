"""Throwaway, migrated store databases: SQLite files and PostgreSQL databases on the machine's
server (``scripts/ensure_postgres.sh`` starts it), dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from store.migrate import upgrade

# Where to create (and drop) throwaway PostgreSQL databases (README: TEST_PG_ADMIN_DSN).
PG_ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server to create throwaway databases on does not answer."""


async def migrated_sqlite(path: Path) -> str:
    """The URL of a migrated SQLite store in the file ``path`` (created if missing)."""
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade(url)
    return url


@asynccontextmanager
async def throwaway_postgres(prefix: str, *, admin_dsn: str = PG_ADMIN_DSN) -> AsyncIterator[str]:
    """A new, migrated PostgreSQL database named ``<prefix>_<random>`` (its asyncpg URL),
    dropped afterwards even if connections to it are still open."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(admin_dsn)
    except OSError as exc:
        raise PostgresUnavailable(
            f"PostgreSQL is not reachable at {admin_dsn}: {exc}; run scripts/ensure_postgres.sh"
            " or point TEST_PG_ADMIN_DSN at a server"
        ) from exc
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            host = admin_dsn.split("://", 1)[1].rsplit("/", 1)[0]
            url = f"postgresql+asyncpg://{host}/{name}"
            await upgrade(url)
            yield url
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
