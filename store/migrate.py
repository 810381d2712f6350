"""Apply Alembic migrations: ``python -m store.migrate`` or :func:`upgrade` from code."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from settings import get_settings
from store.db import make_engine

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def _config(url: str) -> Config:
    cfg = Config(str(ALEMBIC_INI))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logger"] = False
    return cfg


async def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (safe to call repeatedly)."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:

            def _go(sync_conn: Connection) -> None:
                cfg = _config(url)
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, "head")

            await conn.run_sync(_go)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    url = get_settings().database_url
    asyncio.run(upgrade(url))
    print(f"database at {url.split('@')[-1]} is at the newest schema")
