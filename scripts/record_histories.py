"""Record the workflow histories that tests/test_replay.py replays against the current code.

    uv run python scripts/record_histories.py          # every history still missing
    uv run python scripts/record_histories.py --only clicked_after_first_reminder
    uv run python scripts/record_histories.py --force  # re-record the current versions

Each branch drives the real journey the way a shop does (starter API, worker from worker.py,
SMTP catcher, migrated SQLite store) on a dev server with per-workflow time skipping, and
writes the finished run's history to ``tests/histories/<journey>__<branch>__v<N>.json``,
N being the journey's workflow *code* version in ``CODE_VERSIONS`` below. Bump N when you put
a change behind ``workflow.patched``. Existing files are kept (``--force`` re-records those of
the current versions; never do that once a version is deployed), so the runs of older code
keep replaying in the tests. See docs/changing-a-journey.md.
"""

# ruff: noqa: E402  (the repo root goes on sys.path before the project's imports)

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.testing._timeskipping import TimeSkippingConfig

from devstack.catcher import MailCatcher
from settings import Settings, temporal_cli
from starter.api import Journeys
from starter.http import create_app
from store.db import make_engine, make_session_factory
from store.migrate import upgrade
from tests.conftest import Stack
from tests.helpers import HAT, MUG, TEE, abandon_cart, add_customer, email_for, wait_for_mail
from worker import build_worker, make_mailer
from workflows.common import SEARCH_ATTRIBUTES

HISTORIES = ROOT / "tests" / "histories"

# The workflow code version of each journey: bump it with every `workflow.patched` change.
CODE_VERSIONS = {"cart_recovery": 2}

Branch = Callable[[Stack, str], Awaitable[WorkflowHandle[Any, Any]]]


def history_path(journey: str, branch: str, version: int) -> Path:
    return HISTORIES / f"{journey}__{branch}__v{version}.json"


# -- cart recovery ----------------------------------------------------------------------------


async def _first_reminder_sent(stack: Stack, cid: str) -> WorkflowHandle[Any, Any]:
    await add_customer(stack, cid)
    handle: WorkflowHandle[Any, Any] = await abandon_cart(stack, cid, TEE, MUG)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    await _expect_mail(stack, cid, 1)
    return handle


async def _expect_mail(stack: Stack, cid: str, count: int) -> None:
    got = await wait_for_mail(stack.catcher, email_for(cid), count)
    if len(got) != count:
        raise RuntimeError(f"{cid}: expected {count} emails, the catcher has {len(got)}")


async def full_path(stack: Stack, cid: str) -> WorkflowHandle[Any, Any]:
    await add_customer(stack, cid)
    handle: WorkflowHandle[Any, Any] = await abandon_cart(stack, cid, TEE, MUG)
    await stack.fast_forward(handle, timedelta(days=7, hours=1))
    return handle


async def ordered_after_first_reminder(stack: Stack, cid: str) -> WorkflowHandle[Any, Any]:
    handle = await _first_reminder_sent(stack, cid)
    await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o-{cid}", "total": "48.30", "lines": [TEE, MUG]}
    )
    return handle


async def cart_changed_before_first_reminder(stack: Stack, cid: str) -> WorkflowHandle[Any, Any]:
    await add_customer(stack, cid)
    handle: WorkflowHandle[Any, Any] = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(minutes=40))
    await abandon_cart(stack, cid, HAT, MUG)  # restarts the one-hour wait
    await stack.fast_forward(handle, timedelta(minutes=65))
    await _expect_mail(stack, cid, 1)
    await stack.fast_forward(handle, timedelta(days=7))
    return handle


async def cart_emptied(stack: Stack, cid: str) -> WorkflowHandle[Any, Any]:
    await add_customer(stack, cid)
    handle: WorkflowHandle[Any, Any] = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(minutes=10))
    await abandon_cart(stack, cid)  # no lines: the cart was emptied
    return handle


async def unsubscribed(stack: Stack, cid: str) -> WorkflowHandle[Any, Any]:
    handle = await _first_reminder_sent(stack, cid)
    await stack.journeys.unsubscribe({"customer_id": cid})  # signals customer_left
    return handle


async def hard_bounce(stack: Stack, cid: str) -> WorkflowHandle[Any, Any]:
    await add_customer(stack, cid)
    stack.catcher.rcpt_answers[email_for(cid)] = "550 5.1.1 No such user here"
    handle: WorkflowHandle[Any, Any] = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    return handle


async def clicked_after_first_reminder(stack: Stack, cid: str) -> WorkflowHandle[Any, Any]:
    """The customer follows the checkout link of the first reminder, then does not order."""
    handle = await _first_reminder_sent(stack, cid)
    (mail,) = stack.catcher.to(email_for(cid))
    html = mail.get_body(preferencelist=("html",))
    assert html is not None
    link = re.search(r'href="https://shop\.test(/t/c/[^"]+)"', html.get_content())
    assert link is not None, "the first reminder has no tracked link"
    app = create_app(stack.settings, journeys=stack.journeys)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://shop.test"
    ) as http:
        assert (await http.get(link.group(1))).status_code == 302
    await stack.fast_forward(handle, timedelta(days=7))
    return handle


# journey -> branch name -> (how to drive it, the outcome it must end with)
BRANCHES: dict[str, dict[str, tuple[Branch, str]]] = {
    "cart_recovery": {
        "full_path": (full_path, "completed"),
        "ordered_after_first_reminder": (ordered_after_first_reminder, "ordered"),
        "cart_changed_before_first_reminder": (cart_changed_before_first_reminder, "completed"),
        "cart_emptied": (cart_emptied, "cart_emptied"),
        "unsubscribed": (unsubscribed, "unsubscribed"),
        "hard_bounce": (hard_bounce, "bounced"),
        "clicked_after_first_reminder": (clicked_after_first_reminder, "completed"),
    },
}


# -- the stack --------------------------------------------------------------------------------


@asynccontextmanager
async def recording_stack() -> AsyncIterator[Stack]:
    """The parts tests/conftest.py builds, once, for a script: dev server with time skipping
    (off until a branch fast-forwards its run), SMTP catcher, a fresh migrated SQLite store."""
    env = await WorkflowEnvironment.start_time_skipping_v2(
        ts_config=TimeSkippingConfig(enabled=False),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=temporal_cli(Settings()),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
        ],
    )
    catcher = MailCatcher().start()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'journeys.db'}"
        await upgrade(url)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        settings = Settings(
            environment="test",
            temporal_task_queue="record-histories",
            database_url=url,
            smtp_host=catcher.host,
            smtp_port=catcher.port,
            mail_from="Example Shop <shop@shop.test>",
            public_base_url="https://shop.test",
            secret_key="history-secret-key-0123456789",
            journeys_dir=ROOT / "journeys",
        )
        mailer = make_mailer(settings)
        try:
            async with (
                env,
                build_worker(
                    env.client, settings=settings, sessions=sessions, mailer=mailer
                ) as worker,
            ):
                yield Stack(
                    env=env,
                    client=env.client,
                    settings=settings,
                    sessions=sessions,
                    catcher=catcher,
                    journeys=Journeys(client=env.client, sessions=sessions, settings=settings),
                    worker=worker,
                )
        finally:
            await mailer.close()
            await engine.dispose()
            catcher.stop()


async def record(*, only: set[str], force: bool) -> list[Path]:
    """Record the branches whose history for the current code version is missing (all of
    them with ``force``); files of other versions are left alone."""
    plan = [
        (journey, branch, drive, outcome, history_path(journey, branch, CODE_VERSIONS[journey]))
        for journey, branches in BRANCHES.items()
        for branch, (drive, outcome) in branches.items()
        if (not only or branch in only)
        and (force or not history_path(journey, branch, CODE_VERSIONS[journey]).exists())
    ]
    if not plan:
        print(
            "Every history of the current code versions exists; nothing recorded. "
            "Changed a workflow behind workflow.patched? Bump its CODE_VERSIONS entry."
        )
        return []
    HISTORIES.mkdir(parents=True, exist_ok=True)
    written = []
    async with recording_stack() as stack:
        for journey, branch, drive, outcome, path in plan:
            cid = f"c-{branch.replace('_', '-')}"  # a fresh store and server: ids are free
            handle = await drive(stack, cid)
            result = await asyncio.wait_for(handle.result(), timeout=30)
            if result.outcome != outcome:
                raise RuntimeError(f"{journey}/{branch}: ended {result.outcome!r}, not {outcome!r}")
            path.write_text((await handle.fetch_history()).to_json() + "\n")
            written.append(path)
            print(f"{path.relative_to(ROOT)}: {result.outcome}, sent {result.sent}")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", action="append", default=[], help="record only this branch")
    parser.add_argument(
        "--force", action="store_true", help="re-record the current versions' histories too"
    )
    args = parser.parse_args()
    unknown = set(args.only) - {b for branches in BRANCHES.values() for b in branches}
    if unknown:
        parser.error(f"unknown branch(es): {', '.join(sorted(unknown))}")
    asyncio.run(record(only=set(args.only), force=args.force))


if __name__ == "__main__":
    main()
