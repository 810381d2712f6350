"""New-customer nurture: the full 60 days with a shipment, the second order, the first-week
cap; two shipment ids too long for a step name that share a prefix; an unsubscribe (told by
signal, or seen first by the gate) before a shipment."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from histories.common import (
    Branch,
    Handle,
    check,
    expect_mail,
    expect_steps,
    finished,
    handle_of,
    still_running,
)
from store.models import Customer
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


async def _shipped(stack: Stack, cid: str, shipment_id: str) -> None:
    await stack.journeys.order_shipped(
        {"customer_id": cid, "order_id": f"o1-{cid}", "shipment_id": shipment_id}
    )


async def long_shipment_ids(stack: Stack, cid: str) -> Handle:
    """Two parcels whose ids (64 characters) differ only at the end: a notice for each;
    then the timeline to day 60 (the first week's third email was the second notice)."""
    handle = await _first_order(stack, cid)
    prefix = "PARCEL-" + "0" * 55
    await _shipped(stack, cid, f"{prefix}-1")
    await expect_mail(stack, cid, 2)
    await _shipped(stack, cid, f"{prefix}-2")
    await expect_mail(stack, cid, 3)
    notices = steps_of(journey_mails(stack.catcher, cid, JOURNEY))[1:]
    check(len(set(notices)) == 2, f"{cid}: notices {notices}")
    await stack.fast_forward(handle, timedelta(days=60, minutes=1))
    return handle


async def _after_unsubscribe(stack: Stack, cid: str, handle: Handle) -> Handle:
    """Code version 1 ended the run on the unsubscribe; later: the shipment's notice still
    goes out, the marketing steps are skipped to day 60."""
    if not await still_running(handle):
        return handle
    await _shipped(stack, cid, f"o1-{cid}")
    await expect_steps(stack, cid, JOURNEY, "thanks", f"shipping_o1-{cid}")
    await stack.fast_forward(handle, timedelta(days=60, minutes=1))
    return handle


async def unsubscribed_keeps_shipping(stack: Stack, cid: str) -> Handle:
    """Unsubscribes after the thanks (signal customer_left), then the order ships."""
    handle = await _first_order(stack, cid)
    await stack.journeys.unsubscribe({"customer_id": cid})
    return await _after_unsubscribe(stack, cid, handle)


async def unsubscribe_seen_by_gate(stack: Stack, cid: str) -> Handle:
    """The unsubscribe is in the store but its signal never came: the gate skips the day-3
    care; then the order ships."""
    handle = await _first_order(stack, cid)
    async with stack.sessions.begin() as s:
        customer = await s.get(Customer, cid)
        check(customer is not None, f"{cid}: no customer")
        if customer is not None:
            customer.subscribed = False
    await stack.fast_forward(handle, timedelta(days=3, minutes=1))
    return await _after_unsubscribe(stack, cid, handle)


BRANCHES = {
    "full_timeline": Branch(
        full_timeline,
        "completed",
        ["thanks", "shipping_o1-{cid}", "care", "review", "one_month_gift", "repurchase", "offer"],
    ),
    "second_order": Branch(second_order, "repeat_customer", ["thanks", "care", "review"]),
    "first_week_cap": Branch(first_week_cap, "completed"),  # sent: checked in the function
    # code version 2: a notice for each parcel (version 1: one for both, the step name cut
    # at 64 characters)
    "long_shipment_ids": Branch(long_shipment_ids, "completed"),
    # code version 2: the notice still goes out (version 1 ended nurture on the unsubscribe)
    "unsubscribed_keeps_shipping": Branch(
        unsubscribed_keeps_shipping, "unsubscribed", ["thanks", "shipping_o1-{cid}"]
    ),
    "unsubscribe_seen_by_gate": Branch(
        unsubscribe_seen_by_gate, "unsubscribed", ["thanks", "shipping_o1-{cid}"]
    ),
}
