"""The parts a benchmark run owns: its own Temporal dev server (SQLite file, WAL), SMTP
catcher, store database, journey worker and floor worker processes, and HTTP API process.

Everything is wired from one :class:`Settings`, as ``make run`` does; the worker and the API
are the project's own entry points (``worker.py``, ``python -m starter.http``) started as
processes with that settings' environment, so the numbers include process boundaries the way
a deployment has them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from devstack.catcher import MailCatcher, free_port
from journeys.config import load_journey
from settings import ROOT, Settings
from starter.api import Journeys
from store.db import SessionFactory, make_engine, make_session_factory
from testkit.databases import PG_ADMIN_DSN, migrated_sqlite, throwaway_postgres
from testkit.servers import start_plain_server
from testkit.stack import WRITE_KEY, copy_journeys, stack_settings

# Where the PostgreSQL runs create their throwaway databases (BENCHMARKS.md).
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_DSN", PG_ADMIN_DSN)
JOURNEY_QUEUE = "bench-journeys"
FLOOR_QUEUE = "bench-floor"


class TimedCatcher(MailCatcher):
    """The project's catcher, noting when (wall clock) each recipient's mail was accepted."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.first_arrival: dict[str, float] = {}
        self.arrivals = 0

    def keep(self, raw: bytes) -> None:
        at = time.time()
        super().keep(raw)
        with self.lock:
            address = parseaddr(str(self.messages[-1]["To"]))[1].lower()
            self.first_arrival.setdefault(address, at)
            self.arrivals += 1

    def clear(self) -> None:
        super().clear()
        with self.lock:
            self.first_arrival.clear()
            self.arrivals = 0

    def arrived(self, address: str) -> float | None:
        with self.lock:
            return self.first_arrival.get(address.lower())


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes ``Settings()`` in a child process equal ``settings``."""
    names = (
        "environment",
        "temporal_address",
        "temporal_namespace",
        "temporal_task_queue",
        "database_url",
        "smtp_host",
        "smtp_port",
        "smtp_pool_size",
        "mail_from",
        "public_base_url",
        "secret_key",
        "api_host",
        "api_port",
        "api_write_key",
        "journeys_dir",
        "journey_speedup",
        "smtp_provider_rates",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "SMTP_"))}
    env.update({name.upper(): str(getattr(settings, name)) for name in names})
    env["PYTHONUNBUFFERED"] = "1"
    # No Prometheus port: a fixed one (the default 127.0.0.1:9464) collides with a second
    # bench, or a second copy of the test suite's smoke bench, on the same machine.
    env["METRICS_BIND"] = ""
    return env


def fast_journeys_dir(target: Path) -> Path:
    """A copy of journeys/ whose cart recovery sends its first reminder at once (after 0 s),
    so entry and event → email measure the machinery, not the journey's wait."""
    toml = copy_journeys(target) / "cart_recovery.toml"
    text = toml.read_text(encoding="utf-8")
    first_after = 'after = "1h"'
    if first_after not in text:
        raise RuntimeError(f"{toml}: expected the first step to say {first_after}; update bench")
    toml.write_text(text.replace(first_after, 'after = "0s"', 1), encoding="utf-8")
    config = load_journey("cart_recovery", target)
    if config.steps[0].after.total_seconds() != 0:
        raise RuntimeError(f"{toml}: the first step should wait 0 s after the bench's edit")
    return target


class Child:
    """A child process with its log in a file; stopped with SIGTERM, killed if it hangs."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait_for_log(self, text: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.log}:\n{self.tail()}")
            if text.encode() in self.log.read_bytes():
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} did not log {text!r} within {seconds} s; see {self.log}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self, seconds: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, seconds)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of a process, in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dev_server_pid() -> int | None:
    """The dev server is a child of this process (started by the SDK's bridge)."""
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me and comm.startswith("temporal"):
            return int(stat.parent.name)
    return None


@dataclass
class BenchStack:
    workdir: Path
    env: WorkflowEnvironment
    settings: Settings  # journeys with the 0 s first reminder; worker and API use these
    sessions: SessionFactory
    catcher: TimedCatcher
    journeys: Journeys  # Python starter, 0 s first reminder
    waiting_journeys: Journeys  # Python starter, cart_recovery.toml as shipped (1 h)
    worker: Child
    floor_worker: Child
    api: Child
    http: httpx.AsyncClient
    temporal_db: Path
    db_kind: str
    notes: list[str] = field(default_factory=list)

    @property
    def client(self) -> Client:
        return self.env.client

    def temporal_db_bytes(self) -> int:
        return sum(
            p.stat().st_size
            for p in (self.temporal_db, *(Path(f"{self.temporal_db}{s}") for s in ("-wal",)))
            if p.exists()
        )

    def journeys_with(self, **changes: object) -> Journeys:
        return Journeys(
            client=self.client,
            sessions=self.sessions,
            settings=self.settings.model_copy(update=changes),
        )


@asynccontextmanager
async def bench_database(db: str, workdir: Path) -> AsyncIterator[str]:
    """The store's URL: a migrated SQLite file in ``workdir``, or a throwaway PostgreSQL."""
    if db == "sqlite":
        yield await migrated_sqlite(workdir / "journeys.db")
    elif db == "postgres":
        async with throwaway_postgres("journeys_bench", admin_dsn=PG_ADMIN_URL) as url:
            yield url
    else:
        raise ValueError(f"--db must be sqlite or postgres, not {db!r}")


@asynccontextmanager
async def bench_stack(*, db: str = "sqlite", keep: bool = False) -> AsyncIterator[BenchStack]:
    """Everything a run needs, stopped in reverse order on exit (the work dir is removed
    unless ``keep``)."""
    workdir = Path(tempfile.mkdtemp(prefix="shop-journeys-bench-"))
    temporal_db = workdir / "temporal.db"
    try:
        async with AsyncExitStack() as parts:
            db_url = await parts.enter_async_context(bench_database(db, workdir))
            env = await parts.enter_async_context(
                await start_plain_server(database=temporal_db, log_level="error")
            )
            catcher = TimedCatcher()
            catcher.start()
            parts.callback(catcher.stop)
            engine = make_engine(db_url)
            parts.push_async_callback(engine.dispose)
            sessions = make_session_factory(engine)
            settings = stack_settings(
                database_url=db_url,
                catcher=catcher,
                journeys_dir=fast_journeys_dir(workdir / "journeys"),
                task_queue=JOURNEY_QUEUE,
                temporal_address=env.client.service_client.config.target_host,
                secret_key="bench-secret-key-0123456789",
                api_host="127.0.0.1",
                # Every bench customer is @example.com: pacing that one domain at a mail
                # provider's pace would measure the pace, not the send path's own cost.
                smtp_provider_rates="other=100000",
            )
            worker, floor_worker, api, http, settings = await _processes(parts, workdir, settings)
            yield BenchStack(
                workdir=workdir,
                env=env,
                settings=settings,
                sessions=sessions,
                catcher=catcher,
                journeys=Journeys(client=env.client, sessions=sessions, settings=settings),
                waiting_journeys=Journeys(
                    client=env.client,
                    sessions=sessions,
                    settings=settings.model_copy(update={"journeys_dir": ROOT / "journeys"}),
                ),
                worker=worker,
                floor_worker=floor_worker,
                api=api,
                http=http,
                temporal_db=temporal_db,
                db_kind=db,
            )
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


async def _processes(
    parts: AsyncExitStack, workdir: Path, settings: Settings
) -> tuple[Child, Child, Child, httpx.AsyncClient, Settings]:
    """The journey worker, the floor worker and the HTTP API as processes, ready (polling,
    healthy), a client of the API and the settings with the API's port; all stopped when
    ``parts`` closes."""

    def child(name: str, args: list[str], child_settings: Settings, log: str) -> Child:
        started = Child(name, args, settings_env(child_settings), workdir / log)
        parts.push_async_callback(started.stop)
        return started

    worker = child("worker", [sys.executable, str(ROOT / "worker.py")], settings, "worker.log")
    floor_worker = child(
        "floor worker",
        [sys.executable, "-m", "bench.floor_worker"],
        settings.model_copy(update={"temporal_task_queue": FLOOR_QUEUE}),
        "floor.log",
    )
    await worker.wait_for_log("worker polling", 180)  # it checks every template of every step
    await floor_worker.wait_for_log("worker polling", 60)
    api, http, settings = await start_api(parts, workdir, settings)
    return worker, floor_worker, api, http, settings


async def start_api(
    parts: AsyncExitStack,
    workdir: Path,
    settings: Settings,
    *,
    name: str = "api",
    healthy: bool = True,
) -> tuple[Child, httpx.AsyncClient, Settings]:
    """``python -m starter.http`` with ``settings`` on a free port, healthy (or, not
    ``healthy``, answering ``/healthz`` at all: Temporal may be unreachable on purpose); a
    client of it with the write key, and the settings with its port. Stopped when
    ``parts`` closes."""
    # A port found free can be taken before the API binds it (by a second suite on the
    # machine, say): the API then exits at once, and starts again on another port.
    for attempt in range(1, 4):
        settings = settings.model_copy(update={"api_port": free_port()})
        log = f"{name}.log" if attempt == 1 else f"{name}{attempt}.log"
        api = Child(
            "HTTP API",
            [sys.executable, "-m", "starter.http"],
            settings_env(settings),
            workdir / log,
        )
        parts.push_async_callback(api.stop)
        http = await parts.enter_async_context(
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{settings.api_port}",
                headers={"Authorization": f"Bearer {WRITE_KEY}"},
                timeout=30,
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
            )
        )
        try:
            await _wait_healthy(http, api, 60, any_answer=not healthy)
            return api, http, settings
        except RuntimeError:
            if attempt == 3 or "address already in use" not in api.tail().lower():
                raise
    raise AssertionError("unreachable")


async def _wait_healthy(
    http: httpx.AsyncClient, api: Child, seconds: float, *, any_answer: bool = False
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if api.proc.poll() is not None:
            raise RuntimeError(f"the HTTP API exited early:\n{api.tail()}")
        try:
            status = (await http.get("/healthz")).status_code
            if status == 200 or (any_answer and status == 503):
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the HTTP API was not healthy within {seconds} s:\n{api.tail()}")
