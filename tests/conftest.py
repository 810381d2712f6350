"""Real parts for every test: a Temporal dev server (time skipping v2), an aiosmtpd catcher,
SQLite and PostgreSQL. One server per session; a fresh task queue and worker per test."""

from __future__ import annotations

import os
import shutil
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.testing._timeskipping import TimeSkippingConfig
from temporalio.worker import Worker

from activities.send import SendActivities
from core.ids import SEARCH_ATTRIBUTES
from devstack.catcher import MailCatcher
from settings import ROOT, Settings, temporal_cli
from starter.api import Journeys
from starter.http import create_app
from store.db import SessionFactory, make_engine, make_session_factory
from store.migrate import upgrade
from worker import build_worker, make_mailer

WRITE_KEY = "test-write-key-0123456789"
SECRET = "test-secret-key-0123456789"
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def start_time_skipping_server() -> WorkflowEnvironment:
    """Dev server with per-workflow time skipping, off by default: tests (and the history
    recording script) move each journey's clock with ``env.fast_forward(handle, duration)``."""
    return await WorkflowEnvironment.start_time_skipping_v2(
        ts_config=TimeSkippingConfig(enabled=False),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=temporal_cli(Settings()),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
        ],
    )


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
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'journeys.db'}"
    await upgrade(url)
    return url


@asynccontextmanager
async def throwaway_postgres(prefix: str) -> AsyncIterator[str]:
    """A new, migrated PostgreSQL database on the machine's server, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN_URL)
    except OSError as exc:  # pragma: no cover - the machine's PostgreSQL must run
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        host = PG_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
        url = f"postgresql+asyncpg://{host}/{name}"
        await upgrade(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str]:
    async with throwaway_postgres("journeys_test") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
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
        target = tmp_path / "journeys"
        if not target.exists():
            shutil.copytree(ROOT / "journeys", target, ignore=shutil.ignore_patterns("*.py"))
        for name, update in changes.items():
            path = target / f"{name}.toml"
            data = tomllib.loads(path.read_text())
            data.update(update)
            path.write_text(_to_toml(data))
        return target

    return make


@dataclass
class Stack:
    env: WorkflowEnvironment
    client: Client
    settings: Settings
    sessions: SessionFactory
    catcher: MailCatcher
    journeys: Journeys
    worker: Worker
    customers: list[str] = field(default_factory=list)

    def new_customer_id(self) -> str:
        cid = f"c-{uuid.uuid4().hex[:12]}"
        self.customers.append(cid)
        return cid

    async def fast_forward(self, handle: WorkflowHandle[Any, Any], duration: timedelta) -> None:
        await self.env.fast_forward(handle, duration)


@pytest.fixture
async def make_stack(
    temporal_env: WorkflowEnvironment,
    catcher: MailCatcher,
    sessions: SessionFactory,
    db_url: str,
    journeys_dir: Callable[..., Path],
) -> AsyncIterator[Callable[..., Any]]:
    """Build the stack a shop meets (starter API + worker) on a fresh task queue."""
    opened: list[tuple[Worker, Any]] = []

    async def make(
        *,
        client: Client | None = None,
        send_class: type[SendActivities] = SendActivities,
        **journey_changes: Any,
    ) -> Stack:
        settings = Settings(
            environment="test",
            temporal_task_queue=f"tq-{uuid.uuid4().hex[:8]}",
            database_url=db_url,
            smtp_host=catcher.host,
            smtp_port=catcher.port,
            mail_from="Example Shop <shop@shop.test>",
            public_base_url="https://shop.test",
            secret_key=SECRET,
            journeys_dir=journeys_dir(**journey_changes),
            smtp_pool_size=2,
            api_write_key=WRITE_KEY,
        )
        use_client = client or temporal_env.client
        mailer = make_mailer(settings)
        worker = build_worker(
            use_client, settings=settings, sessions=sessions, mailer=mailer, send_class=send_class
        )
        await worker.__aenter__()
        opened.append((worker, mailer))
        return Stack(
            env=temporal_env,
            client=use_client,
            settings=settings,
            sessions=sessions,
            catcher=catcher,
            journeys=Journeys(client=use_client, sessions=sessions, settings=settings),
            worker=worker,
        )

    yield make
    for worker, mailer in reversed(opened):
        await worker.__aexit__(None, None, None)
        await mailer.close()


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


def _to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Just enough TOML writing for journey files (tables, arrays of tables, scalars)."""
    scalars, tables, arrays = [], [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            arrays.append((key, value))
        else:
            scalars.append(f"{key} = {_toml_value(value)}")
    out = "\n".join(scalars) + "\n"
    for key, value in tables:
        out += f"\n[{prefix}{key}]\n" + _to_toml(value, f"{prefix}{key}.")
    for key, items in arrays:
        for item in items:
            out += f"\n[[{prefix}{key}]]\n" + _to_toml(item, f"{prefix}{key}.")
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")
