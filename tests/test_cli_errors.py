"""The operator CLI tells the truth, run as an operator runs it (``python -m starter ...`` in
a subprocess): unknown journeys and customers are errors listing what exists, nothing to
cancel is an error, a part of the stack that is down is one line saying which and what to
do (no traceback), and a closed pipe ends quietly."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.catcher import free_port
from settings import ROOT
from starter import ops
from store.decisions import journey_pause
from testkit.data import TEE, abandon_cart, add_customer
from testkit.stack import Stack
from testkit.waiting import PATIENCE, eventually

on_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@dataclass
class Ran:
    code: int
    out: str
    err: str


def cli_env(**settings: str) -> dict[str, str]:
    """The process environment less any TEMPORAL_/DATABASE_ settings of the caller's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEMPORAL_", "DATABASE_", "PAYLOAD_", "ID_HASH_"))
    }
    return {**env, "ENVIRONMENT": "test", **settings}


def stack_env(stack: Stack) -> dict[str, str]:
    """Settings that point the CLI at the test's stack (server, store, journeys)."""
    return cli_env(
        TEMPORAL_ADDRESS=stack.client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=stack.client.namespace,
        TEMPORAL_TASK_QUEUE=stack.settings.temporal_task_queue,
        DATABASE_URL=stack.settings.database_url,
        JOURNEYS_DIR=str(stack.settings.journeys_dir),
    )


async def cli(env: dict[str, str], *args: str) -> Ran:
    """``python -m starter ARGS`` from the repo root; the event loop keeps running (the
    test's worker answers the CLI's queries meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=PATIENCE)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


def one_error_line(ran: Ran) -> str:
    assert "Traceback" not in ran.err and "Traceback" not in ran.out
    lines = ran.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), ran.err
    return lines[0]


JOURNEYS = ", ".join(ops.journey_names(ROOT / "journeys"))


@on_sqlite
async def test_an_unknown_journey_is_an_error_naming_the_journeys(stack):
    for command in (
        ["pause", "--journey", "nope"],
        ["resume", "--journey", "nope"],
        ["cancel", "c-1", "--journey", "nope"],
        ["report", "--journey", "nope"],
    ):
        ran = await cli(stack_env(stack), *command)
        assert ran.code == 2, command
        line = one_error_line(ran)
        assert "unknown journey 'nope'" in line and JOURNEYS in line
    assert {"cart_recovery", "win_back"} <= set(JOURNEYS.split(", "))
    assert "lifecycle" not in JOURNEYS  # a TOML, not a journey


@on_sqlite
async def test_the_workflow_id_spelling_of_a_journey_names_the_journey(stack):
    ran = await cli(stack_env(stack), "pause", "--journey", "cart-recovery", "--reason", "test")
    try:
        assert ran.code == 0 and ran.out.strip() == "journey cart_recovery paused", ran
        async with stack.sessions() as s:
            assert (await journey_pause(s, journey="cart_recovery")) is not None
    finally:
        resumed = await cli(stack_env(stack), "resume", "--journey", "cart-recovery")
    assert resumed.code == 0 and resumed.out.startswith("journey cart_recovery resumed")


@on_sqlite
async def test_an_unknown_customer_is_an_error_in_every_customer_command(stack):
    nobody = f"nobody-{stack.new_customer_id()}"
    for command in (
        ["explain", nobody],
        ["journeys", nobody],
        ["cancel", nobody],
        ["pause", "--customer", nobody],
        ["resume", "--customer", nobody],
    ):
        ran = await cli(stack_env(stack), *command)
        assert ran.code == 2, (command, ran)
        assert f"unknown customer '{nobody}'" in one_error_line(ran)


@on_sqlite
async def test_cancel_with_nothing_running_says_so_and_fails(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    ran = await cli(stack_env(stack), "cancel", cid, "--journey", "cart-recovery")
    assert ran.code == 1
    line = one_error_line(ran)
    assert f"customer '{cid}' has no running cart_recovery run (running: none)" in line

    handle = await abandon_cart(stack, cid, TEE)
    await eventually(lambda: ops.customer_runs(stack.client, cid, running_only=True), bool)
    other = await cli(stack_env(stack), "cancel", cid, "--journey", "welcome_series")
    assert other.code == 1 and "(running: cart_recovery)" in one_error_line(other)
    done = await cli(stack_env(stack), "cancel", cid, "--journey", "cart-recovery")
    assert done.code == 0 and done.out.strip() == f"cancelled 1 run(s): cart-recovery:{cid}"
    assert (await handle.describe()).status.name == "CANCELED"


@on_sqlite
async def test_explain_shows_journey_opt_outs_pauses_and_the_step_of_every_run(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await stack.journeys.unsubscribe({"customer_id": cid, "journey": "browse_follow_up"})
    handle = await abandon_cart(stack, cid, TEE)
    await eventually(lambda: ops.customer_runs(stack.client, cid, running_only=True), bool)
    paused = await cli(stack_env(stack), "pause", "--customer", cid, "--reason", "ticket 7")
    assert paused.code == 0 and f"cart-recovery:{cid}" in paused.out
    await ops.pause_journey(stack.sessions, stack.client, "win_back", paused=True, reason="audit")
    try:
        ran = await cli(stack_env(stack), "explain", cid)
    finally:
        await ops.pause_journey(stack.sessions, stack.client, "win_back", paused=False)
    assert ran.code == 0, ran
    assert "marketing email: subscribed, except the journeys they left: browse_follow_up" in ran.out
    assert "journey win_back PAUSED since" in ran.out and "(audit): its sends are held" in ran.out
    (run_line,) = [line for line in ran.out.splitlines() if f"cart-recovery:{cid}" in line]
    assert "RUNNING" in run_line and "[customer paused: ticket 7]" in run_line
    await handle.terminate("test done")


@on_sqlite
async def test_explain_into_a_closed_pipe_ends_without_a_traceback(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`| head`) is gone before the first line
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter",
        "explain",
        cid,
        cwd=ROOT,
        env=stack_env(stack),
        stdout=write_end,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(write_end)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=PATIENCE)
    code = proc.returncode
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert code == 141


# -- the stack down ---------------------------------------------------------------------------


def down_env(tmp_path: Path, *, store: str = "migrated") -> dict[str, str]:
    return cli_env(
        TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",  # nothing listens there
        DATABASE_URL=store if store != "migrated" else f"sqlite+aiosqlite:///{tmp_path}/j.db",
    )


@pytest.mark.parametrize(
    "command",
    [
        ["explain", "c-42"],
        ["journeys", "c-42"],
        ["cancel", "c-42"],
        ["pause", "--customer", "c-42"],
        ["pause", "--journey", "cart_recovery"],
        ["cart", "c-42"],
        ["demo"],
    ],
)
def test_temporal_down_is_one_line_with_the_fix(command, tmp_path):
    ran = subprocess.run(
        [sys.executable, "-m", "starter", *command],
        cwd=ROOT,
        env=down_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    line = one_error_line(Ran(ran.returncode, ran.stdout, ran.stderr))
    assert ran.returncode == 69
    assert line.startswith("error: Temporal is unreachable at 127.0.0.1:")
    assert "(connection refused): check TEMPORAL_ADDRESS" in line


def test_the_store_down_is_one_line_with_the_fix(tmp_path):
    port = free_port()
    for store, said in (
        (
            f"postgresql+asyncpg://journeys:s3cret@127.0.0.1:{port}/journeys",
            f"error: the store is unreachable at postgresql+asyncpg://journeys:***@127.0.0.1:"
            f"{port}/journeys (connection refused): start the database, or set DATABASE_URL",
        ),
        (
            f"sqlite+aiosqlite:///{tmp_path}/never-migrated.db",
            f"error: the store sqlite+aiosqlite:///{tmp_path}/never-migrated.db has no tables: "
            "run `make migrate`",
        ),
    ):
        ran = subprocess.run(
            [sys.executable, "-m", "starter", "report"],
            cwd=ROOT,
            env=down_env(tmp_path, store=store),
            capture_output=True,
            text=True,
            timeout=PATIENCE,
        )
        assert ran.returncode == 69
        assert one_error_line(Ran(ran.returncode, ran.stdout, ran.stderr)).startswith(said)


def test_make_demo_with_the_stack_down_is_one_line_with_the_fix(tmp_path):
    env = down_env(tmp_path)
    env.pop("ENVIRONMENT")
    ran = subprocess.run(
        ["make", "--no-print-directory", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PATIENCE * 3,
    )
    assert ran.returncode != 0 and "Traceback" not in ran.stderr + ran.stdout
    errors = [line for line in ran.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        line for line in errors if line.startswith("error: Temporal is unreachable at")
    ]
    assert len(errors) == 1
