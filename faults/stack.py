"""The production-shaped stack the fault suite breaks: a Temporal dev server on a file,
PostgreSQL (behind a proxy the suite can cut), the worker and the HTTP API as separate
processes, and a relay the suite controls. Every process can be SIGKILLed and restarted."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from core.ids import SEARCH_ATTRIBUTES
from devstack.catcher import free_port
from faults.relay import PASSWORD, USER, Relay
from settings import ROOT, Settings, temporal_cli
from store.migrate import upgrade

PG_ADMIN_URL = os.environ.get(
    "FAULTS_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TASK_QUEUE = "faults"


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=out, stderr=out, start_new_session=True
        )
        out.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as a crash or the OOM killer would."""
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class FaultStack:
    workdir: Path
    speedup: float
    temporal_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    relay: Relay = field(default_factory=lambda: Relay(port=free_port()))
    proxy_port: int = field(default_factory=free_port)  # PostgreSQL through faults.proxy
    db_name: str = field(default_factory=lambda: f"faults_{uuid.uuid4().hex[:10]}")
    procs: dict[str, Proc] = field(default_factory=dict)
    client: Client | None = None
    # Scale-out (faults/scale_out.py): more workers on the one task queue ("worker",
    # "worker2", ...) and more API processes, each on its own port ("api", "api2", ...).
    workers: int = 1
    apis: int = 1
    more_api_ports: list[int] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.proxy_port}/{self.db_name}"

    @property
    def direct_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:5432/{self.db_name}"

    @property
    def worker_log(self) -> Path:
        return self.workdir / "worker.log"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def api_urls(self) -> list[str]:
        """Every API process's address, the first being ``api_url``."""
        return [f"http://127.0.0.1:{p}" for p in [self.api_port, *self.more_api_ports]]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "TEMPORAL_"))}
        env.update(
            ENVIRONMENT="test",
            TEMPORAL_ADDRESS=f"127.0.0.1:{self.temporal_port}",
            TEMPORAL_TASK_QUEUE=TASK_QUEUE,
            DATABASE_URL=self.database_url,
            # two suites side by side ran PostgreSQL out of its 100 connections at 10 + 10
            DATABASE_POOL_SIZE="5",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(self.relay.port),
            SMTP_USERNAME=USER,
            SMTP_PASSWORD=PASSWORD,
            SMTP_TIMEOUT_SECONDS="10",
            API_HOST="127.0.0.1",
            API_PORT=str(self.api_port),
            PUBLIC_BASE_URL=self.api_url,
            JOURNEY_SPEEDUP=str(self.speedup),
            METRICS_BIND="",
            LOG_FORMAT="json",
            LOG_LEVEL="INFO",
        )
        return env

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'CREATE DATABASE "{self.db_name}"')
        finally:
            await admin.close()
        await upgrade(self.direct_dsn.replace("postgresql://", "postgresql+asyncpg://"))
        self.relay.start()
        cli = temporal_cli(Settings(environment="test"))
        server = [
            cli,
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.temporal_port),
            "--db-filename",
            str(self.workdir / "temporal.db"),
            "--log-level",
            "error",
        ]
        for key in SEARCH_ATTRIBUTES:
            server += ["--search-attribute", f"{key.name}=Keyword"]
        env = self.env()
        proxy = [sys.executable, "-m", "faults.proxy", str(self.proxy_port), "5432"]
        self.procs = {
            "dbproxy": Proc("dbproxy", proxy, env, self.workdir / "dbproxy.log"),
            "temporal": Proc("temporal", server, env, self.workdir / "temporal.log"),
            "worker": Proc("worker", [sys.executable, "worker.py"], env, self.worker_log),
            "api": Proc(
                "api", [sys.executable, "-m", "starter.http"], env, self.workdir / "api.log"
            ),
        }
        for n in range(2, self.workers + 1):
            log = self.workdir / f"worker{n}.log"
            self.procs[f"worker{n}"] = Proc(f"worker{n}", [sys.executable, "worker.py"], env, log)
        self.more_api_ports = [free_port() for _ in range(2, self.apis + 1)]
        for n, port in enumerate(self.more_api_ports, start=2):
            self.procs[f"api{n}"] = Proc(
                f"api{n}",
                [sys.executable, "-m", "starter.http"],
                {**env, "API_PORT": str(port)},
                self.workdir / f"api{n}.log",
            )
        await self.cut_database(False)
        self.procs["temporal"].start()
        self.client = await self.connect()
        for name, proc in self.procs.items():
            if name.startswith(("worker", "api")):
                proc.start()
        for port in [self.api_port, *self.more_api_ports]:
            await wait_port(port, 60)

    async def connect(self, seconds: float = 60) -> Client:
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            try:
                return await Client.connect(
                    f"127.0.0.1:{self.temporal_port}", data_converter=pydantic_data_converter
                )
            except RuntimeError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.3)

    async def cut_database(self, cut: bool = True) -> None:
        """The store unreachable (the proxy killed: connections reset, new ones refused), or
        reachable again."""
        if cut:
            self.procs["dbproxy"].kill()
        else:
            self.procs["dbproxy"].start()
            await wait_port(self.proxy_port, 30)

    async def restart(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].start()
        if name == "temporal":
            self.client = await self.connect()

    async def close(self) -> None:
        apps = [n for n in self.procs if n.startswith(("api", "worker"))]
        for name in [*apps, "temporal", "dbproxy"]:
            if name in self.procs:
                self.procs[name].stop()
        self.relay.stop()
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        finally:
            await admin.close()


async def wait_port(port: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        return
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")
