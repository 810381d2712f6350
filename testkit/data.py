"""Sample shop data, recorded the way a shop records it: customers (in a zone where it is
about 11:00, so a week of journey at that time of day never meets quiet hours), carts, lapsed
buyers, another journey's recent emails."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.ids import send_key, workflow_id
from core.zones import zone_at_local_hour
from store import orders as order_rows  # `orders` is a parameter below
from store import reports
from store.models import Customer, SendLog, utcnow
from testkit.stack import Stack
from testkit.waiting import eventually_passes
from workflows.cart_recovery import CartRecovery

TEE = {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90", "quantity": 2}
MUG = {"sku": "MUG-7", "name": "Coffee mug", "price": "8.50", "quantity": 1}
HAT = {"sku": "HAT-3", "name": "Wool hat", "price": "25.00", "quantity": 1}


def email_for(customer_id: str) -> str:
    return f"{customer_id}@example.com"


async def entered(
    s: AsyncSession,
    customer_id: str,
    *,
    journey: str,
    group: str,
    at: datetime,
    new_customer: bool = True,
) -> None:
    """The customer entering ``journey`` at ``at`` in ``group`` (treated or control),
    recorded as a run records its entry, for the report's tests; ``new_customer``: add the
    customer first (``<id>@shop.test``). The caller owns the transaction."""
    if new_customer:
        s.add(Customer(id=customer_id, email=f"{customer_id}@shop.test"))
        await s.flush()
    await reports.record_entry(
        s,
        customer_id=customer_id,
        journey=journey,
        workflow_id=f"{journey}:{customer_id}",
        run_chain_id="run-1",
        entered_at=at,
        group=group,
        holdout_share=0.5,
        journey_version=1,
    )


async def add_customer(
    stack: Stack, customer_id: str, *, first_name: str | None = "Ada", timezone: str | None = None
) -> None:
    """A customer in a time zone where it is about 11:00 now (unless ``timezone`` is given)."""
    await stack.journeys.customer_upserted(
        {
            "customer_id": customer_id,
            "email": email_for(customer_id),
            "first_name": first_name,
            "last_name": "Lovelace",
            "timezone": timezone or zone_at_local_hour(11),
        }
    )


async def abandon_cart(stack: Stack, customer_id: str, *lines: dict[str, Any], **extra: Any) -> Any:
    """Record the customer's cart; returns the cart recovery run's handle (typed loosely:
    tests read results and queries of it freely)."""
    result = await stack.journeys.cart_updated(
        {
            "customer_id": customer_id,
            "lines": list(lines),
            "checkout_url": f"https://shop.test/checkout/{customer_id}",
            **extra,
        }
    )
    handle = stack.client.get_workflow_handle_for(CartRecovery.run, str(result.workflow_id))
    # The event is accepted at commit; its run starts when the outbox relay delivers it (at
    # once, unless the machine is slow): a test's handle must name a run that exists.
    await eventually_passes(handle.describe)
    return handle


async def lapsed_customer(
    stack: Stack,
    cid: str,
    *,
    as_of: datetime,
    orders: list[int],
    emailed_days_ago: int | None = None,
) -> None:
    """A customer (it is about 11:00 where they live) whose orders were placed the given
    numbers of days before ``as_of``, and last emailed ``emailed_days_ago`` days before it."""
    await add_customer(stack, cid)
    async with stack.sessions.begin() as s:
        for n, days in enumerate(orders):
            await order_rows.record_order(
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


async def emails_from_another_journey(stack: Stack, cid: str, *, journey: str, count: int) -> None:
    """Record ``count`` emails sent to the customer just now by a run of another journey."""
    async with stack.sessions.begin() as s:
        for n in range(count):
            s.add(
                SendLog(
                    idempotency_key=send_key(workflow_id(journey, cid), "other-run", f"step{n}"),
                    customer_id=cid,
                    journey=journey,
                    workflow_id=workflow_id(journey, cid),
                    run_chain_id="other-run",
                    step=f"step{n}",
                    template="t",
                    status="sent",
                    decided_at=utcnow(),
                )
            )
