"""`make run` (python -m devstack) as a developer meets it, on ports and a var/ of its own:
histories are encrypted by default, on a development key made at the first start, and the
embedded Temporal UI decodes them through the codec server it is pointed at."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads, WorkflowExecution
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryRequest,
    ListWorkflowExecutionsRequest,
)
from temporalio.client import Client

from core.codec import ENCODING, KeyRing
from devstack.__main__ import development_payload_keys
from devstack.catcher import free_port
from settings import ROOT, Settings
from testkit.history import history_payloads

STARTED = "Ctrl-C"  # the last line of the banner `make run` prints once it is up


@dataclass
class Devstack:
    var: Path
    env: dict[str, str]  # what a shell in the clone has, with this stack's ports
    temporal: str
    ui: str
    codec: str
    out: list[str]


def _clean_environment() -> dict[str, str]:
    """This process's environment without the settings a developer's shell does not have."""
    ours = ("TEMPORAL_", "DATABASE_", "SMTP_", "PAYLOAD_", "CODEC_", "TWILIO_", "SMS_", "API_")
    return {k: v for k, v in os.environ.items() if not k.startswith(ours)}


@contextlib.asynccontextmanager
async def devstack(tmp_path: Path) -> AsyncIterator[Devstack]:
    var = tmp_path / "var"
    ports = {name: free_port() for name in ("dev", "ui", "smtp", "sms", "api", "codec", "m")}
    env = _clean_environment()
    env.update(
        ENVIRONMENT="development",  # as the Makefile sets it
        JOURNEY_SPEEDUP="3600",  # as `make demo` sets it
        TEMPORAL_DEV_PORT=str(ports["dev"]),
        TEMPORAL_UI_PORT=str(ports["ui"]),
        SMTP_PORT=str(ports["smtp"]),
        SMS_CATCHER_PORT=str(ports["sms"]),
        API_PORT=str(ports["api"]),
        CODEC_SERVER_PORT=str(ports["codec"]),
        METRICS_BIND=f"127.0.0.1:{ports['m']}",
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'journeys.db'}",
        CATCHER_MAILDIR=str(tmp_path / "mail"),
        SMS_CATCHER_DIR=str(tmp_path / "sms"),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devstack",
        "--var",
        str(var),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out: list[str] = []
    try:
        assert proc.stdout is not None
        began = time.monotonic()
        while not any(STARTED in line for line in out):
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=120)
            if not line:
                logs = {p.name: p.read_text()[-2000:] for p in var.glob("*.log")}
                raise AssertionError(f"make run ended while starting: {out}\n{logs}")
            out.append(line.decode().rstrip())
        # `make run` comes up in reasonable time with the codec server (two cores, shared)
        assert time.monotonic() - began < 90, out
        yield Devstack(
            var=var,
            env=env,
            temporal=f"127.0.0.1:{ports['dev']}",
            ui=f"http://127.0.0.1:{ports['ui']}",
            codec=f"http://127.0.0.1:{ports['codec']}",
            out=out,
        )
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)  # make run stops its children in order
            try:
                await asyncio.wait_for(proc.wait(), timeout=60)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _run(stack: Devstack, *args: str, **env: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=ROOT,
        env={**stack.env, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=180)
    assert proc.returncode == 0, out.decode()
    return out.decode()


@pytest.mark.timeout(600)
async def test_make_run_encrypts_histories_by_default_and_the_ui_decodes_them(tmp_path: Path):
    async with devstack(tmp_path) as stack:
        key_file = stack.var / "dev-payload-keys"
        assert key_file.is_file(), stack.out  # made on the first start, in var/ (gitignored)
        assert key_file.stat().st_mode & 0o077 == 0
        assert KeyRing.parse(key_file.read_text()) is not None
        assert any("Codec server " + stack.codec in line for line in stack.out), stack.out

        # `make demo` as printed by the Makefile, the key given as settings.py would read
        # var/dev-payload-keys (this stack's var/ is not the repo's)
        said = await _run(
            stack,
            sys.executable,
            "-m",
            "starter",
            "demo",
            PAYLOAD_KEYS=key_file.read_text().strip(),
        )
        assert "caught:" in said, said
        cid = said.split("customer ", 1)[1].split()[0]

        plain = await Client.connect(stack.temporal)  # no codec: what the server stores
        runs = await plain.workflow_service.list_workflow_executions(
            ListWorkflowExecutionsRequest(namespace="default", query="WorkflowType='CartRecovery'")
        )
        [run] = runs.executions
        history = await plain.workflow_service.get_workflow_execution_history(
            GetWorkflowExecutionHistoryRequest(
                namespace="default",
                execution=WorkflowExecution(workflow_id=run.execution.workflow_id),
            )
        )
        payloads = history_payloads(json_format.MessageToDict(history))
        encoding = base64.b64encode(ENCODING).decode()
        assert payloads and all(p["metadata"]["encoding"] == encoding for p in payloads), [
            base64.b64decode(p["metadata"]["encoding"]) for p in payloads
        ]
        # the cart's checkout URL is in the run's input (its id is readable by design)
        assert b"/checkout/" not in history.SerializeToString()

        async with httpx.AsyncClient(timeout=30) as http:
            # The UI the dev server serves is pointed at the codec server ...
            ui_settings = (await http.get(f"{stack.ui}/api/v1/settings")).json()
            assert ui_settings["Codec"]["Endpoint"] == stack.codec, ui_settings
            # ... which answers the browser's preflight and call from the UI's origin.
            origin = stack.ui
            preflight = await http.options(
                f"{stack.codec}/decode",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type,x-namespace",
                },
            )
            decoded = await http.post(
                f"{stack.codec}/decode",
                content=json.dumps({"payloads": payloads[:1]}),
                headers={
                    "Origin": origin,
                    "Content-Type": "application/json",
                    "X-Namespace": "default",
                },
            )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == origin
    assert decoded.status_code == 200, decoded.text
    assert decoded.headers["access-control-allow-origin"] == origin
    [first] = json_format.Parse(decoded.text, Payloads()).payloads
    assert first.metadata["encoding"] == b"json/plain"
    assert cid in json.dumps(json.loads(first.data))


def test_the_development_key_is_made_once_and_kept(tmp_path: Path):
    settings = Settings(_env_file=None, environment="development", payload_keys="")

    first = development_payload_keys(settings, tmp_path)
    again = development_payload_keys(settings, tmp_path)

    assert first.payload_keys and first.payload_keys == again.payload_keys
    assert KeyRing.parse(first.payload_keys) is not None


def test_given_keys_and_other_environments_make_no_development_key(tmp_path: Path):
    given = Settings(_env_file=None, environment="development", payload_keys="k1:" + "A" * 44)
    test = Settings(_env_file=None, environment="test", payload_keys="")

    assert development_payload_keys(given, tmp_path).payload_keys == given.payload_keys
    assert development_payload_keys(test, tmp_path).payload_keys == ""
    assert list(tmp_path.iterdir()) == []


def test_settings_read_the_development_key_in_development_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import settings as settings_module

    key_file = tmp_path / "dev-payload-keys"
    key_file.write_text("dev1:" + base64.b64encode(b"d" * 32).decode() + "\n")
    monkeypatch.setattr(settings_module, "DEV_PAYLOAD_KEYS", key_file)
    monkeypatch.delenv("PAYLOAD_KEYS", raising=False)

    dev = Settings(_env_file=None, environment="development")
    test = Settings(_env_file=None, environment="test")
    given = Settings(_env_file=None, environment="development", payload_keys="k9:x")

    assert dev.payload_keys == key_file.read_text().strip()
    assert test.payload_keys == ""
    assert given.payload_keys == "k9:x"
