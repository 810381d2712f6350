"""What every journey's branches share: the branch record and checks on runs and mail."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple

import httpx
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

from starter.http import create_app
from starter.ingest.service import EventResult
from store.models import SendLog
from testkit.data import email_for
from testkit.engagement import PERSON, read_later
from testkit.mail import journey_mails, parts, steps_of, wait_for_mail
from testkit.stack import Stack
from testkit.waiting import PATIENCE, eventually

Handle = WorkflowHandle[Any, Any]
Drive = Callable[[Stack, str], Awaitable[Handle]]


class Branch(NamedTuple):
    # drives one customer's run (customer id given); returns its handle
    drive: Drive
    # the outcome the run must end with; None: not a journey (the daily sweep), or checked in
    # the function
    outcome: str | None
    # the steps it must have sent, in order ("{cid}": the customer's id); None: not fixed
    sent: Sequence[str] | None = None
    # on a fresh store (and a worker on it) of its own: for runs of the daily sweep, which
    # looks at every customer in its store
    own_store: bool = False
    # changes to journeys/*.toml for this branch (``{"win_back": {"holdout_share": 1.0}}``,
    # top-level keys replaced as testkit.stack.copy_journeys does); the branch then runs on
    # a store and a worker of its own with those journeys
    journeys: Mapping[str, dict[str, Any]] | None = None


def check(ok: bool, what: str) -> None:
    """A branch that does not go where it should must not be recorded (asserts may be off)."""
    if not ok:
        raise RuntimeError(what)


def handle_of(
    stack: Stack, run: Callable[..., Awaitable[Any]], result: EventResult, *, action: str
) -> Handle:
    """The run (of the workflow whose ``run`` method is given) that an event started or
    signalled; the event's ``action`` must be ``action``."""
    check(result.action == action, f"{result.workflow_id}: {result.action!r}, not {action!r}")
    check(result.workflow_id is not None, "the event names no workflow")
    handle: Handle = stack.client.get_workflow_handle_for(run, str(result.workflow_id))
    return handle


async def expect_mail(stack: Stack, cid: str, count: int) -> None:
    got = await wait_for_mail(stack.catcher, email_for(cid), count)
    check(len(got) == count, f"{cid}: expected {count} emails, the catcher has {len(got)}")


async def expect_steps(
    stack: Stack, cid: str, journey: str, *steps: str, seconds: float = PATIENCE
) -> None:
    """Wait until the customer has as many of the journey's mails as ``steps``; they must be
    exactly those steps, in that order."""

    async def sent() -> list[str]:
        return steps_of(journey_mails(stack.catcher, cid, journey))

    got = await eventually(sent, lambda got: len(got) >= len(steps), seconds)
    check(got == list(steps), f"{cid}: {journey} mails {got}, expected {list(steps)}")


def html_of(stack: Stack, cid: str, journey: str, index: int) -> str:
    """The HTML part of the customer's ``index``-th mail of the journey."""
    return parts(journey_mails(stack.catcher, cid, journey)[index])[1]


async def _delivered(stack: Stack, cid: str) -> None:
    """Wait until none of the customer's sends is between its final dot and its recorded
    250 (``sent_at`` is what "read later" moves back)."""

    async def claimed() -> int:
        async with stack.sessions() as s:
            found = await s.scalar(
                select(func.count()).where(SendLog.customer_id == cid, SendLog.status == "sending")
            )
            return int(found or 0)

    check(await eventually(claimed, lambda n: n == 0) == 0, f"{cid}: a send stays claimed")


async def follow(
    stack: Stack, link: str, status: int, *, method: str = "GET", reader: str | None = None
) -> None:
    """Open or click a tracked link from a mail through the HTTP app (httpx + ASGI, as the
    tests' ``http`` fixture), as the customer's mail client does (``method="POST"``: press
    the button of the page a link shows, e.g. "stay"). With ``reader`` (the customer id) it
    is a person's: read an hour after delivery, in a browser (testkit/engagement.py)."""
    headers: dict[str, str] = {}
    if reader is not None:
        await _delivered(stack, reader)
        await read_later(stack, reader)
        headers = PERSON
    app = create_app(stack.settings, journeys=stack.journeys)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://shop.test"
    ) as http:
        answer = await http.request(method, link, headers=headers)
    check(answer.status_code == status, f"{method} {link}: {answer.status_code}, not {status}")


async def finished(handle: Handle, seconds: float = PATIENCE) -> Any:
    """The run's result (a ``JourneyResult``); fetching it again later is fine."""
    return await asyncio.wait_for(handle.result(), timeout=seconds)


async def still_running(handle: Handle, seconds: float = 3.0) -> bool:
    """Is the run still open ``seconds`` after what could have ended it? (A branch recorded
    on two code versions, where the older one ended the run there.)"""
    for _ in range(int(seconds / 0.1)):
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return False
        await asyncio.sleep(0.1)
    return True
