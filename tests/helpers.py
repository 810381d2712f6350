"""Small helpers shared by tests: shop events, waiting for mail, reading parts."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

from devstack.catcher import MailCatcher
from starter.zones import zone_at_local_hour
from workflows.cart_recovery import CartRecovery

TEE = {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90", "quantity": 2}
MUG = {"sku": "MUG-7", "name": "Coffee mug", "price": "8.50", "quantity": 1}
HAT = {"sku": "HAT-3", "name": "Wool hat", "price": "25.00", "quantity": 1}


def email_for(customer_id: str) -> str:
    return f"{customer_id}@example.com"


async def add_customer(
    stack: Any, customer_id: str, *, first_name: str | None = "Ada", timezone: str | None = None
) -> None:
    """A customer in a time zone where it is about 11:00 now: a week of journey at the same
    time of day never meets quiet hours."""
    await stack.journeys.customer_upserted(
        {
            "customer_id": customer_id,
            "email": email_for(customer_id),
            "first_name": first_name,
            "last_name": "Lovelace",
            "timezone": timezone or zone_at_local_hour(11),
        }
    )


async def abandon_cart(stack: Any, customer_id: str, *lines: dict[str, Any], **extra: Any) -> Any:
    """Record the customer and their cart; returns the journey's workflow handle."""
    result = await stack.journeys.cart_updated(
        {
            "customer_id": customer_id,
            "lines": list(lines),
            "checkout_url": f"https://shop.test/checkout/{customer_id}",
            **extra,
        }
    )
    return stack.client.get_workflow_handle_for(CartRecovery.run, result.workflow_id)


async def wait_for_mail(
    catcher: MailCatcher, address: str, count: int, seconds: float = 15.0
) -> list[EmailMessage]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        got = catcher.to(address)
        if len(got) >= count or loop.time() > deadline:
            return got
        await asyncio.sleep(0.05)


def parts(msg: EmailMessage) -> tuple[str, str]:
    """(text, html) of a multipart/alternative message."""
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None, "message lacks a text or an HTML part"
    return text.get_content(), html.get_content()


def journey_mails(catcher: MailCatcher, customer_id: str, journey: str) -> list[EmailMessage]:
    """The mails of one journey to the customer, in the order they arrived."""
    return [
        m
        for m in catcher.to(email_for(customer_id))
        if _journey_header(m).startswith(f"{journey}/")
    ]


def _journey_header(mail: EmailMessage) -> str:
    """X-Journey, unfolded (a long header is folded onto two lines)."""
    return "".join(str(mail["X-Journey"] or "").split())


def steps_of(mails: list[EmailMessage]) -> list[str]:
    return [_journey_header(m).split("/", 1)[1] for m in mails]


def tracked_links(html: str, kind: str = "c") -> list[str]:
    """Paths of the tracking links (kind "c": clicks, "o": the open pixel) in an HTML part."""
    import re

    return re.findall(rf'(/t/{kind}/[^"]+)"', html)


async def settle(seconds: float = 0.3) -> None:
    """Let activities that were just scheduled finish (the clock does not move meanwhile)."""
    await asyncio.sleep(seconds)


async def lapsed_customer(
    stack: Any,
    cid: str,
    *,
    as_of: datetime,
    orders: list[int],
    emailed_days_ago: int | None = None,
) -> None:
    """A customer (it is about 11:00 where they live) whose orders were placed the given
    numbers of days before ``as_of``, and last emailed ``emailed_days_ago`` days before it."""
    from store import repo
    from store.models import Customer

    await add_customer(stack, cid)
    async with stack.sessions.begin() as s:
        for n, days in enumerate(orders):
            await repo.record_order(
                s,
                order_id=f"o{n}-{cid}",
                customer_id=cid,
                total=Decimal("50.00"),
                currency="EUR",
                lines=[TEE],
                placed_at=as_of - timedelta(days=days),
            )
        if emailed_days_ago is not None:
            row = await s.get(Customer, cid)
            assert row is not None
            row.last_emailed_at = as_of - timedelta(days=emailed_days_ago)


async def emails_from_another_journey(stack: Any, cid: str, *, journey: str, count: int) -> None:
    """Record ``count`` emails sent to the customer just now by a run of another journey."""
    from store.models import SendLog, utcnow

    async with stack.sessions.begin() as s:
        for n in range(count):
            s.add(
                SendLog(
                    idempotency_key=f"{journey}:{cid}:other-run:step{n}",
                    customer_id=cid,
                    journey=journey,
                    workflow_id=f"{journey.replace('_', '-')}:{cid}",
                    run_chain_id="other-run",
                    step=f"step{n}",
                    template="t",
                    status="sent",
                    decided_at=utcnow(),
                )
            )
