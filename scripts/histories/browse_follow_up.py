"""Browse follow-up: a click brings the recommendation, no reaction the coupon, a new view
restarts the week away, buying ends it; a glance at another product before the reviews
(the follow-up stays on the product that started it)."""

from __future__ import annotations

from datetime import timedelta

from histories.common import (
    Branch,
    Handle,
    check,
    expect_steps,
    follow,
    handle_of,
    html_of,
    still_running,
)
from testkit.data import add_customer
from testkit.mail import journey_mails, tracked_links
from testkit.stack import Stack
from testkit.waiting import settle
from workflows.browse_follow_up import BrowseFollowUp

JOURNEY = "browse_follow_up"
BOOTS = {
    "sku": "BOOT-4",
    "name": "Hiking boots",
    "price": "129.00",
    "category": "outdoor",
    "url": "https://shop.test/p/boot-4",
}
LACES = {"sku": "LACE-1", "name": "Spare laces", "price": "4.00", "category": "outdoor"}


async def _view(stack: Stack, cid: str, product: dict[str, str] = BOOTS) -> str:
    result = await stack.journeys.product_viewed({"customer_id": cid, "product": product})
    return result.action


async def _interested(stack: Stack, cid: str) -> Handle:
    """The customer looks at the boots twice (and someone else at the laces)."""
    await add_customer(stack, cid)
    await add_customer(stack, f"{cid}-other")
    await _view(stack, f"{cid}-other", LACES)
    check(await _view(stack, cid) == "recorded", f"{cid}: one view started the follow-up")
    result = await stack.journeys.product_viewed({"customer_id": cid, "product": BOOTS})
    return handle_of(stack, BrowseFollowUp.run, result, action="started_or_signalled")


async def _reviewed(stack: Stack, cid: str) -> Handle:
    handle = await _interested(stack, cid)
    await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    await expect_steps(stack, cid, JOURNEY, "reviews")
    return handle


async def clicked_recommendation(stack: Stack, cid: str) -> Handle:
    """Clicks the links of the reviews email: the recommendation at once (no clock moved)."""
    handle = await _reviewed(stack, cid)
    for link in tracked_links(html_of(stack, cid, JOURNEY, 0)):
        await follow(stack, link, 302, reader=cid)  # a person, not a scanner
    return handle


async def no_reaction_coupon(stack: Stack, cid: str) -> Handle:
    """No open, click or visit in the week after the reviews: a coupon for the boots."""
    handle = await _reviewed(stack, cid)
    await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    return handle


async def restarted_by_view(stack: Stack, cid: str) -> Handle:
    """Back on day 5: the week away starts again, so the reviews come 7 days after that view;
    then, no reaction: the coupon."""
    handle = await _interested(stack, cid)
    await stack.fast_forward(handle, timedelta(days=5))
    await _view(stack, cid)
    await stack.fast_forward(handle, timedelta(days=3))  # day 8: only 3 days away
    await settle()
    await expect_steps(stack, cid, JOURNEY)
    await stack.fast_forward(handle, timedelta(days=4, minutes=1))  # 7 days after the view
    await expect_steps(stack, cid, JOURNEY, "reviews")
    await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    return handle


async def bought(stack: Stack, cid: str) -> Handle:
    """Buys the boots after the reviews: leaves at once."""
    handle = await _reviewed(stack, cid)
    await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o-{cid}", "total": "129.00", "lines": [BOOTS]}
    )
    return handle


async def other_product_viewed(stack: Stack, cid: str) -> Handle:
    """A look at the laces after the boots started the follow-up: the reviews a week after
    that view; then, no reaction: the coupon."""
    handle = await _interested(stack, cid)
    await _view(stack, cid, LACES)
    await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    await expect_steps(stack, cid, JOURNEY, "reviews")
    subject = journey_mails(stack.catcher, cid, JOURNEY)[0]["Subject"]
    check(subject == "What customers say about Hiking boots", f"{cid}: reviews of {subject!r}")
    await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    return handle


async def bought_after_other_view(stack: Stack, cid: str) -> Handle:
    """A look at the laces, the reviews of the boots a week later, then buys the boots:
    leaves at once (code version 1 followed the laces: the order did not end it, the coupon
    for the laces came a week later)."""
    handle = await _interested(stack, cid)
    await _view(stack, cid, LACES)
    await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    await expect_steps(stack, cid, JOURNEY, "reviews")
    await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o-{cid}", "total": "129.00", "lines": [BOOTS]}
    )
    if await still_running(handle):
        await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    return handle


BRANCHES = {
    "clicked_recommendation": Branch(
        clicked_recommendation, "recommended", ["reviews", "recommendation"]
    ),
    "no_reaction_coupon": Branch(no_reaction_coupon, "completed", ["reviews", "coupon"]),
    "restarted_by_view": Branch(restarted_by_view, "completed", ["reviews", "coupon"]),
    "bought": Branch(bought, "bought", ["reviews"]),
    # code version 2 stays on the boots (version 1 switched to the laces)
    "other_product_viewed": Branch(other_product_viewed, "completed", ["reviews", "coupon"]),
    "bought_after_other_view": Branch(bought_after_other_view, "bought", ["reviews"]),
}
