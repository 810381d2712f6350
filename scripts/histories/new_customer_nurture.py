"""New-customer nurture: the full 60 days with a shipment, the second order, the first-week
cap."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from histories.common import Branch, Handle, check, expect_steps, finished, handle_of
from testkit.data import add_customer
from testkit.mail import journey_mails, steps_of
from testkit.stack import Stack
from testkit.waiting import settle
from workflows.nurture import NewCustomerNurture

JOURNEY = "new_customer_nurture"
SHIRT = {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90", "category": "apparel"}


async def _first_order(stack: Stack, cid: str) -> Handle:
    await add_customer(stack, cid)
    result = await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o1-{cid}", "total": "19.90", "lines": [SHIRT]}
    )
    handle = handle_of(stack, NewCustomerNurture.run, result, action="started")
    await expect_steps(stack, cid, JOURNEY, "thanks")
    return handle


async def full_timeline(stack: Stack, cid: str) -> Handle:
    """A shipping notice on day 0, then care, review and the day-30/45/60 emails."""
    handle = await _first_order(stack, cid)
    await stack.journeys.order_shipped(
        {"customer_id": cid, "order_id": f"o1-{cid}", "tracking_url": "https://track.example.com/1"}
    )
    await expect_steps(stack, cid, JOURNEY, "thanks", f"shipping_o1-{cid}")
    await stack.fast_forward(handle, timedelta(days=60, minutes=1))
    return handle


async def second_order(stack: Stack, cid: str) -> Handle:
    """A second order on day 8 ends nurture at once (no clock moved)."""
    handle = await _first_order(stack, cid)
    await stack.fast_forward(handle, timedelta(days=8))
    await expect_steps(stack, cid, JOURNEY, "thanks", "care", "review")
    await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o2-{cid}", "total": "19.90", "lines": [SHIRT]}
    )
    return handle


async def first_week_cap(stack: Stack, cid: str) -> Handle:
    """Five parcels at once: two notices fit in the first week's three emails, the other three
    and the day-3 care are skipped; then the timeline runs to day 60. (Which two parcels get
    a notice depends on the order the signals arrive in.)"""
    handle = await _first_order(stack, cid)
    await asyncio.gather(
        *(
            stack.journeys.order_shipped(
                {"customer_id": cid, "order_id": f"o1-{cid}", "shipment_id": f"parcel-{n}"}
            )
            for n in range(5)
        )
    )
    await stack.fast_forward(handle, timedelta(days=6, hours=23))
    await settle()
    week = steps_of(journey_mails(stack.catcher, cid, JOURNEY))
    check(
        len(week) == 3 and all(s.startswith("shipping_parcel-") for s in week[1:]),
        f"{cid}: first week {week}",
    )
    await stack.fast_forward(handle, timedelta(days=53, hours=2))
    result = await finished(handle)
    limited = [d for d in result.decisions if (d.reason or "").startswith("first_week_limit")]
    check(len(limited) == 4, f"{cid}: {len(limited)} first-week skips, not 4")
    rest = ["review", "one_month_gift", "repurchase", "offer"]
    check(list(result.sent) == [*week, *rest], f"{cid}: sent {result.sent}")
    return handle


BRANCHES = {
    "full_timeline": Branch(
        full_timeline,
        "completed",
        ["thanks", "shipping_o1-{cid}", "care", "review", "one_month_gift", "repurchase", "offer"],
    ),
    "second_order": Branch(second_order, "repeat_customer", ["thanks", "care", "review"]),
    "first_week_cap": Branch(first_week_cap, "completed"),  # sent: checked in the function
}
