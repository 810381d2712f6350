"""Real parts for every test, as thin fixtures over testkit/: a Temporal dev server (time
skipping v2), an aiosmtpd catcher, SQLite and PostgreSQL. One server per session; a fresh
task queue and worker per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.send import SendActivities
from devstack.catcher import MailCatcher
from starter.http import create_app
from store.db import SessionFactory, make_engine, make_session_factory
from testkit.databases import migrated_sqlite, throwaway_postgres
from testkit.servers import start_time_skipping_server
from testkit.stack import Stack, copy_journeys, running_stack, stack_settings


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await start_time_skipping_server() as env:
        yield env


@pytest.fixture(scope="session")
def catcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailCatcher]:
    c = MailCatcher(maildir=tmp_path_factory.mktemp("mail")).start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
async def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return await migrated_sqlite(tmp_path_factory.mktemp("db") / "journeys.db")


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str]:
    async with throwaway_postgres("journeys_test") as url:
        yield url


@pytest.fixture
async def own_sqlite_url(tmp_path: Path) -> str:
    """A store of this test alone: for tests that read every row of the store (reports),
    since the shared stores hold rows other tests wrote at their skipped-ahead times."""
    return await migrated_sqlite(tmp_path / "own.db")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The store's URL: ``sqlite`` and ``postgresql`` are shared by the session's tests; a
    test marked ``own_store`` gets a fresh SQLite file of its own instead."""
    if request.node.get_closest_marker("own_store"):
        return str(request.getfixturevalue("own_sqlite_url"))
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[SessionFactory]:
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    await engine.dispose()


@pytest.fixture
def journeys_dir(tmp_path: Path) -> Callable[..., Path]:
    """A copy of journeys/ whose TOMLs a test may change: ``journeys_dir(cart_recovery={...})``."""

    def make(**changes: dict[str, Any]) -> Path:
        return copy_journeys(tmp_path / "journeys", **changes)

    return make


@pytest.fixture
async def make_stack(
    temporal_env: WorkflowEnvironment,
    catcher: MailCatcher,
    sessions: SessionFactory,
    db_url: str,
    journeys_dir: Callable[..., Path],
) -> AsyncIterator[Callable[..., Any]]:
    """Build the stack a shop meets (starter API + worker) on a fresh task queue."""
    async with AsyncExitStack() as opened:

        async def make(
            *,
            client: Client | None = None,
            send_class: type[SendActivities] = SendActivities,
            **journey_changes: Any,
        ) -> Stack:
            settings = stack_settings(
                database_url=db_url,
                catcher=catcher,
                journeys_dir=journeys_dir(**journey_changes),
                smtp_pool_size=2,
            )
            return await opened.enter_async_context(
                running_stack(
                    temporal_env,
                    settings=settings,
                    sessions=sessions,
                    catcher=catcher,
                    client=client,
                    send_class=send_class,
                )
            )

        yield make


@pytest.fixture
async def stack(make_stack: Callable[..., Any]) -> Stack:
    s: Stack = await make_stack()
    return s


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP API of this stack, in process (httpx + ASGI)."""
    app = create_app(stack.settings, journeys=stack.journeys)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as client:
        yield client
