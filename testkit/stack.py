"""The stack a shop meets, in one process: the starter API (``Journeys``) and a worker from
worker.py on a store, a Temporal server and an SMTP catcher; and the settings that wire them."""

from __future__ import annotations

import shutil
import tomllib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.send import SendActivities
from devstack.catcher import MailCatcher
from settings import ROOT, Settings
from starter.api import Journeys
from store.db import SessionFactory
from worker import build_worker, make_mailer

WRITE_KEY = "test-write-key-0123456789"
SECRET = "test-secret-key-0123456789"


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
        """Move this run's clock (time-skipping server only); returns once the run is idle
        at the new time, or at once when it has ended: whether a run still waits can hang
        on the hour the test runs at (quiet hours are the customer's local night), and an
        ended run has nothing left to skip (the caller asserts on its result)."""
        try:
            await self.env.fast_forward(handle, duration)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND or "already completed" not in exc.message:
                raise


def stack_settings(
    *,
    database_url: str,
    catcher: MailCatcher,
    journeys_dir: Path = ROOT / "journeys",
    task_queue: str | None = None,
    **more: Any,
) -> Settings:
    """Settings of a test stack: the catcher as SMTP relay, ``https://shop.test`` as public
    URL, the kit's write key and secret, and a task queue of its own unless one is named."""
    values: dict[str, Any] = {
        "environment": "test",
        "temporal_task_queue": task_queue or f"tq-{uuid.uuid4().hex[:8]}",
        "database_url": database_url,
        "smtp_host": catcher.host,
        "smtp_port": catcher.port,
        "mail_from": "Example Shop <shop@shop.test>",
        "public_base_url": "https://shop.test",
        "shop_url": "https://shop.test",  # the storefront (the demo shop's other settings)
        "secret_key": SECRET,
        "api_write_key": WRITE_KEY,
        "journeys_dir": journeys_dir,
        "health_probe_seconds": 0,  # tests stop a part and expect /healthz to see it at once
        # A test that stops the catcher may pause sending (the circuit breaker): the next
        # test's send probes the relay after a second, not after production's cool-down.
        "smtp_breaker_cooldown_seconds": 1,
        # Tests read a report right after the orders they place (the store is shared by the
        # session's tests): computed on each request, no background refresh. The snapshot
        # tests set their own (tests/test_report_snapshots.py).
        "report_max_age_seconds": 0,
        "report_refresh_seconds": 0,
    }
    return Settings(**{**values, **more})


@asynccontextmanager
async def running_stack(
    env: WorkflowEnvironment,
    *,
    settings: Settings,
    sessions: SessionFactory,
    catcher: MailCatcher,
    client: Client | None = None,
    send_class: type[SendActivities] = SendActivities,
) -> AsyncIterator[Stack]:
    """A worker built as worker.py builds it (polling ``settings``' task queue) and the
    starter API with its outbox relay, on ``env``'s server (through ``client`` if given);
    stopped on exit."""
    use_client = client or env.client
    mailer = make_mailer(settings)
    try:
        async with (
            build_worker(
                use_client,
                settings=settings,
                sessions=sessions,
                mailer=mailer,
                send_class=send_class,
            ) as worker,
            Journeys(client=use_client, sessions=sessions, settings=settings) as journeys,
        ):
            yield Stack(
                env=env,
                client=use_client,
                settings=settings,
                sessions=sessions,
                catcher=catcher,
                journeys=journeys,
                worker=worker,
            )
    finally:
        await mailer.close()


def copy_journeys(target: Path, **changes: dict[str, Any]) -> Path:
    """A copy of journeys/ at ``target`` (made once) whose TOMLs get top-level keys replaced:
    ``copy_journeys(dir, cart_recovery={"send_retry": {...}})``."""
    if not target.exists():
        shutil.copytree(
            ROOT / "journeys", target, ignore=shutil.ignore_patterns("*.py", "__pycache__")
        )
    for name, update in changes.items():
        path = target / f"{name}.toml"
        data = tomllib.loads(path.read_text())
        data.update(update)
        path.write_text(_to_toml(data))
    return target


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
    for key, table in tables:
        out += f"\n[{prefix}{key}]\n" + _to_toml(table, f"{prefix}{key}.")
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
