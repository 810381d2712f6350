"""Opening and clicking an email as a person does, and as a mail scanner does.

Opens and clicks are classified (core/engagement.py): a fetch within seconds of delivery,
with a script's user agent (httpx's own), or of every link at once is a machine's and
changes no journey. A test that plays the customer reads the email later (``read_later``:
its delivery is moved back in the send log, as if it had come an hour ago) in a browser
(``PERSON``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from sqlalchemy import select

from starter.http import create_app
from store.models import SendLog
from testkit.live_api import serving
from testkit.stack import Stack
from testkit.waiting import eventually

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
PERSON = {"User-Agent": CHROME}  # headers of a person's browser or mail client
# A mail-security gateway checking every link at delivery, and Apple Mail Privacy
# Protection fetching the images of every message on arrival.
SCANNER = {"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"}
APPLE_MPP = {"User-Agent": "Mozilla/5.0"}


async def read_later(stack: Stack, customer_id: str, by: timedelta = timedelta(hours=1)) -> None:
    """The customer's emails were delivered ``by`` earlier than they were (the person
    reads them that much later than a scanner would).

    Waits first until none of the customer's sends is still ``sending``: the catcher has a
    message a moment before its delivery time is committed, and a delivery not yet recorded
    would not be moved (the person's open would then count as a prefetch at delivery)."""

    async def in_flight() -> list[str]:
        async with stack.sessions() as s:
            rows = await s.scalars(
                select(SendLog.step).where(
                    SendLog.customer_id == customer_id, SendLog.status == "sending"
                )
            )
            return list(rows)

    still = await eventually(in_flight, lambda steps: not steps)
    assert not still, f"sends of {customer_id} never left 'sending': {still}"
    async with stack.sessions.begin() as s:
        rows = await s.scalars(
            select(SendLog).where(SendLog.customer_id == customer_id, SendLog.sent_at.is_not(None))
        )
        for row in rows:
            assert row.sent_at is not None
            row.sent_at -= by


async def delivered(stack: Stack, customer_id: str, count: int = 1) -> None:
    """Until the send log has the delivery time of ``count`` of the customer's emails (the
    relay's 250 is recorded a moment after the catcher has the message)."""

    async def sent() -> int:
        async with stack.sessions() as s:
            rows = await s.scalars(
                select(SendLog).where(
                    SendLog.customer_id == customer_id, SendLog.sent_at.is_not(None)
                )
            )
            return len(rows.all())

    assert await eventually(sent, lambda n: n >= count) >= count


@asynccontextmanager
async def live(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the stack's HTTP API served on a socket (uvicorn), as a recipient's
    fetches reach it: real HEAD requests, the client's address."""
    app = create_app(stack.settings, journeys=stack.journeys)
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as client:
        yield client
