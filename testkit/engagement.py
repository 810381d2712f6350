"""Opening and clicking an email as a person does, and as a mail scanner does.

Opens and clicks are classified (core/engagement.py): a fetch within seconds of delivery,
with a script's user agent (httpx's own), or of every link at once is a machine's and
changes no journey. A test that plays the customer reads the email later (``read_later``:
its delivery is moved back in the send log, as if it had come an hour ago) in a browser
(``PERSON``).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from store.models import SendLog
from testkit.stack import Stack

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
    reads them that much later than a scanner would)."""
    async with stack.sessions.begin() as s:
        rows = await s.scalars(
            select(SendLog).where(SendLog.customer_id == customer_id, SendLog.sent_at.is_not(None))
        )
        for row in rows:
            assert row.sent_at is not None
            row.sent_at -= by
