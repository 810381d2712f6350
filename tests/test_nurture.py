"""New-customer nurture: the timeline, care by category, the second order, the first-week cap."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from testkit.data import add_customer, email_for
from testkit.mail import journey_mails, parts, steps_of, wait_for_mail
from testkit.waiting import PATIENCE
from workflows.nurture import NewCustomerNurture

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
SHIRT = {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90", "category": "apparel"}
KETTLE = {"sku": "KET-9", "name": "Kettle", "price": "39.00", "category": "kitchen"}


async def first_order(stack, cid: str, *lines, order_id: str | None = None):
    await add_customer(stack, cid)
    result = await stack.journeys.order_placed(
        {
            "customer_id": cid,
            "order_id": order_id or f"o1-{cid}",
            "total": "19.90",
            "lines": list(lines),
        }
    )
    assert result.action == "started"
    return stack.client.get_workflow_handle_for(NewCustomerNurture.run, result.workflow_id)


def nurture_steps(stack, cid: str) -> list[str]:
    return steps_of(journey_mails(stack.catcher, cid, "new_customer_nurture"))


async def test_the_full_timeline_with_care_for_the_ordered_category(stack):
    cid = stack.new_customer_id()
    handle = await first_order(stack, cid, SHIRT)
    await wait_for_mail(stack.catcher, email_for(cid), 1)
    await stack.journeys.order_shipped(
        {"customer_id": cid, "order_id": f"o1-{cid}", "tracking_url": "https://track.example.com/1"}
    )
    await wait_for_mail(stack.catcher, email_for(cid), 2)
    await stack.fast_forward(handle, timedelta(days=60, minutes=1))
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)

    assert result.outcome == "completed"
    steps = nurture_steps(stack, cid)
    assert steps == [
        "thanks",
        f"shipping_o1-{cid}",
        "care",
        "review",
        "one_month_gift",
        "repurchase",
        "offer",
    ]
    mails = journey_mails(stack.catcher, cid, "new_customer_nurture")
    thanks_text, _ = parts(mails[0])
    assert "NEXT-" in thanks_text and "Blue T-shirt x 1" in thanks_text
    shipping_text, _ = parts(mails[1])
    assert "https://track.example.com/1" in shipping_text
    care_text, _ = parts(mails[2])
    assert "Wash at 30 degrees" in care_text  # the apparel care template


async def test_care_falls_back_to_the_default_for_other_categories(stack):
    cid = stack.new_customer_id()
    handle = await first_order(stack, cid, KETTLE)
    await stack.fast_forward(handle, timedelta(days=3, minutes=1))
    mails = journey_mails(stack.catcher, cid, "new_customer_nurture")
    assert steps_of(mails) == ["thanks", "care"]
    assert "care guides" in parts(mails[1])[0]
    await handle.terminate("test done")


async def test_a_second_order_ends_nurture_at_once(stack):
    cid = stack.new_customer_id()
    handle = await first_order(stack, cid, SHIRT)
    await stack.fast_forward(handle, timedelta(days=8))
    assert nurture_steps(stack, cid) == ["thanks", "care", "review"]

    await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o2-{cid}", "total": "19.90", "lines": [SHIRT]}
    )
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)  # no clock moved
    assert result.outcome == "repeat_customer"
    assert nurture_steps(stack, cid) == ["thanks", "care", "review"]


async def test_at_most_three_emails_in_the_first_week_whatever_arrives(stack):
    cid = stack.new_customer_id()
    handle = await first_order(stack, cid, SHIRT)
    await wait_for_mail(stack.catcher, email_for(cid), 1)
    await asyncio.gather(
        *(
            stack.journeys.order_shipped(
                {"customer_id": cid, "order_id": f"o1-{cid}", "shipment_id": f"parcel-{n}"}
            )
            for n in range(5)
        )
    )
    await stack.fast_forward(handle, timedelta(days=6, hours=23))
    first_week = nurture_steps(stack, cid)
    assert len(first_week) == 3
    assert first_week[0] == "thanks" and all(s.startswith("shipping_") for s in first_week[1:])

    await stack.fast_forward(handle, timedelta(hours=2))  # day 7: the first week is over
    assert nurture_steps(stack, cid)[3:] == ["review"]
    state = await handle.query(NewCustomerNurture.state)
    limited = [d for d in state.decisions if (d.reason or "").startswith("first_week_limit")]
    assert len(limited) == 4  # three more parcels and the day-3 care content
    await handle.terminate("test done")
