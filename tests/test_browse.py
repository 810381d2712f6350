"""Browse follow-up: interest without purchase, each branch."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from testkit.data import add_customer, email_for
from testkit.engagement import PERSON, read_later
from testkit.mail import journey_mails, parts, steps_of, tracked_links, wait_for_mail
from testkit.waiting import PATIENCE
from workflows.browse_follow_up import BrowseFollowUp

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
BOOTS = {
    "sku": "BOOT-4",
    "name": "Hiking boots",
    "price": "129.00",
    "category": "outdoor",
    "url": "https://shop.test/p/boot-4",
}
LACES = {"sku": "LACE-1", "name": "Spare laces", "price": "4.00", "category": "outdoor"}


async def view(stack, cid: str, product=BOOTS):
    return await stack.journeys.product_viewed({"customer_id": cid, "product": product})


async def interested(stack, cid: str):
    """A customer looks at the boots twice (and someone else at the laces)."""
    await add_customer(stack, cid)
    await add_customer(stack, f"{cid}-other")
    await view(stack, f"{cid}-other", LACES)
    first = await view(stack, cid)
    assert first.action == "recorded"  # one view is no interest yet
    second = await view(stack, cid)
    assert second.action == "started_or_signalled"
    return stack.client.get_workflow_handle_for(BrowseFollowUp.run, second.workflow_id)


def browse_steps(stack, cid: str) -> list[str]:
    return steps_of(journey_mails(stack.catcher, cid, "browse_follow_up"))


async def test_reviews_after_a_week_away_then_a_click_brings_the_recommendation(stack, http):
    cid = stack.new_customer_id()
    handle = await interested(stack, cid)
    await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    (reviews,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
    text, html = parts(reviews)
    assert reviews["Subject"] == "What customers say about Hiking boots"
    assert "https://shop.test/reviews/BOOT-4" in text

    targets = {}
    await read_later(stack, cid)  # a person, not a scanner at delivery
    for link in tracked_links(html):  # every shop link in the mail goes via the tracker
        answer = await http.get(link, headers=PERSON)
        assert answer.status_code == 302
        targets[answer.headers["location"]] = link
    assert set(targets) == {"https://shop.test/reviews/BOOT-4", BOOTS["url"]}
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)  # no clock moved
    assert result.outcome == "recommended"
    assert browse_steps(stack, cid) == ["reviews", "recommendation"]
    recommendation, _ = parts(journey_mails(stack.catcher, cid, "browse_follow_up")[1])
    assert "Hiking boots" in recommendation and "Spare laces" in recommendation


async def test_a_new_view_after_the_reviews_brings_the_recommendation_too(stack):
    cid = stack.new_customer_id()
    handle = await interested(stack, cid)
    await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    await view(stack, cid)
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.outcome == "recommended"
    assert browse_steps(stack, cid) == ["reviews", "recommendation"]


async def test_no_open_click_or_visit_for_a_week_brings_a_coupon_for_it(stack):
    cid = stack.new_customer_id()
    handle = await interested(stack, cid)
    await stack.fast_forward(handle, timedelta(days=14, minutes=2))
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)

    assert result.outcome == "completed"
    assert browse_steps(stack, cid) == ["reviews", "coupon"]
    coupon_text, _ = parts(journey_mails(stack.catcher, cid, "browse_follow_up")[1])
    assert "LOOK-" in coupon_text and "Hiking boots" in coupon_text
    state = await handle.query(BrowseFollowUp.state)
    assert state.branches["interest"].startswith("coupon")


async def test_a_new_view_restarts_the_week_away(stack):
    cid = stack.new_customer_id()
    handle = await interested(stack, cid)
    await stack.fast_forward(handle, timedelta(days=5))
    await view(stack, cid)  # back again on day 5
    await stack.fast_forward(handle, timedelta(days=3))  # day 8: only 3 days away
    assert browse_steps(stack, cid) == []
    await stack.fast_forward(handle, timedelta(days=4, minutes=1))  # 7 days after the view
    assert len(await wait_for_mail(stack.catcher, email_for(cid), 1)) == 1
    assert browse_steps(stack, cid) == ["reviews"]
    await handle.terminate("test done")


async def test_buying_the_product_ends_the_follow_up_at_once(stack):
    cid = stack.new_customer_id()
    handle = await interested(stack, cid)
    await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o-{cid}", "total": "129.00", "lines": [BOOTS]}
    )
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.outcome == "bought"
    assert browse_steps(stack, cid) == ["reviews"]
