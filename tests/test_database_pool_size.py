"""DATABASE_POOL_SIZE: how many PostgreSQL connections each process keeps (README,
Configuration). Two copies of the suite side by side used up PostgreSQL's 100 at the
fixed 10 + 10 per process; the fault stacks now run at 5."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy.pool import QueuePool

from settings import Settings
from store.db import engine_for


def test_the_pool_size_is_read_from_the_environment_and_a_bad_one_is_named(monkeypatch):
    monkeypatch.setenv("DATABASE_POOL_SIZE", "3")
    assert Settings(_env_file=None, environment="test").database_pool_size == 3
    monkeypatch.setenv("DATABASE_POOL_SIZE", "0")
    with pytest.raises(ValidationError, match="database_pool_size"):
        Settings(_env_file=None, environment="test")


async def test_the_engine_keeps_that_many_and_as_many_again_when_busy(postgres_url):
    # engine_for: the worker's, the API's and the CLI's engine
    settings = Settings(
        _env_file=None, environment="test", database_url=postgres_url, database_pool_size=3
    )
    engine = engine_for(settings)
    try:
        pool = engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.size() == 3 and pool._max_overflow == 3
    finally:
        await engine.dispose()
