"""Every command the README prints runs as printed (scripts/check_readme_commands.py),
against a stack of this test's own: the session's Temporal server, a worker on a task queue
of its own, a fresh store, its own SMTP catcher and the HTTP API on a port the commands are
pointed at (CHECK_API_URL), payloads encrypted as `make run` encrypts them, with the codec
server the README's `temporal` commands name (CHECK_CODEC_URL). The commands run from the repo
root without the virtualenv on PATH, as in a fresh clone's shell; the hints they print run
too."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any, cast

import pytest
from temporalio.client import Client

from devstack.catcher import MailCatcher, free_port
from devstack.sms_catcher import SmsCatcher
from settings import ROOT, Settings
from starter.client import data_converter
from starter.codec_server import create_app as create_codec_app
from starter.http import create_app
from store.db import make_engine, make_session_factory
from testkit.databases import migrated_sqlite
from testkit.live_api import serving
from testkit.stack import running_stack, stack_settings

# The daily sweep's schedule has one id per namespace: creating and triggering it here
# would run a sweep on the session's server that other tests' schedules share.
SKIP = ["starter schedule"]
# A fixed key for this test only (make run makes a development key of its own in var/).
TEST_ONLY_PAYLOAD_KEYS = (
    "readme-test:" + base64.b64encode(b"readme-commands-test-only-key-32").decode()
)


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_readme_commands", ROOT / "scripts" / "check_readme_commands.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_checker_runs_printed_hints_and_refuses_bare_commands():
    check = _checker()
    printed = (
        "caught: 'Your cart' (make mail SHOW=3)\n"
        "is `make run` up?\n"
        "in a terminal: ENVIRONMENT=development .venv/bin/python -m starter report\n"
        "usage: python -m starter [-h] {customer,cart}\n"
        "python -m starter: error: unknown journey\n"
    )

    assert check.hints(printed) == [
        "make mail SHOW=3",
        "make run",
        "ENVIRONMENT=development .venv/bin/python -m starter report",
    ]
    assert check.bare_commands(printed) == []
    assert check.bare_commands("in a terminal: python -m starter report --journey x") == [
        "python -m starter report --journey x"
    ]
    assert check.bare_commands("run: temporal operator search-attribute create") != []


@pytest.mark.timeout(1800)  # some thirty commands, each a fresh `uv run`, and the demo's email
async def test_every_readme_command_runs_as_printed(temporal_env, tmp_path):
    catcher = MailCatcher(maildir=tmp_path / "mail").start()
    # The texts `make demo` waits for and `make sms` lists: the local catcher, as `make run`
    # starts it (its development account), keeping what it gets in this test's directory.
    texts = SmsCatcher(directory=tmp_path / "sms").start()
    url = await migrated_sqlite(tmp_path / "readme.db")
    engine = make_engine(url)
    port = free_port()
    settings = stack_settings(
        database_url=url,
        catcher=catcher,
        public_base_url=f"http://127.0.0.1:{port}",  # the one-click unsubscribe is called
        api_write_key="dev-write-key",  # the README's K
        twilio_base_url=f"http://{texts.host}:{texts.port}",
        payload_keys=TEST_ONLY_PAYLOAD_KEYS,
    )
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        data_converter=data_converter(settings),
    )
    codec_settings = Settings(
        _env_file=None, environment="test", payload_keys=settings.payload_keys
    )
    try:
        async with (
            running_stack(
                temporal_env,
                settings=settings,
                sessions=make_session_factory(engine),
                catcher=catcher,
                client=client,
            ) as stack,
            serving(create_app(settings, journeys=stack.journeys), port=port) as api,
            serving(cast(Any, create_codec_app(codec_settings))) as codec,
        ):
            # ENVIRONMENT as a fresh shell has it (unset): `make setup`'s .env says development
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("TEMPORAL_", "DATABASE_", "SMTP_", "PAYLOAD_", "ENVIRONMENT"))
            }
            made = await asyncio.create_subprocess_exec("sh", str(ROOT / "scripts" / "dev_env.sh"))
            assert await made.wait() == 0
            env.update(
                UV_FROZEN="1",  # `uv run` uses the lock as it is (never re-locks the tree)
                CHECK_API_URL=api,
                CHECK_CODEC_URL=codec,
                PAYLOAD_KEYS=TEST_ONLY_PAYLOAD_KEYS,  # as make run's key file would give it
                TEMPORAL_ADDRESS=stack.client.service_client.config.target_host,
                TEMPORAL_NAMESPACE=stack.client.namespace,
                TEMPORAL_TASK_QUEUE=settings.temporal_task_queue,
                DATABASE_URL=url,
                SMTP_PORT=str(catcher.port),  # no SMTP_HOST: the demo looks in the catcher
                CATCHER_MAILDIR=str(tmp_path / "mail"),
                SMS_CATCHER_DIR=str(tmp_path / "sms"),
            )
            skips = [arg for pattern in SKIP for arg in ("--skip", pattern)]
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "scripts" / "check_readme_commands.py"),
                *skips,
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=1500)
    finally:
        catcher.stop()
        texts.stop()
        await engine.dispose()
    report = out.decode()
    assert proc.returncode == 0, report
    assert " 0 failed" in report.splitlines()[-1]
    for must_run in (
        "make demo",
        "explain c-42",
        "cancel c-42",
        "temporal workflow query",
        "hint of make demo: ok: make mail SHOW=",
    ):
        assert any(must_run in line and ": ok: " in line for line in report.splitlines()), (
            f"{must_run!r} was not run:\n{report}"
        )
