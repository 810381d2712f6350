"""Welcome series: the day-7 branches (ordered, ordered with the welcome coupon, gift offer,
reactivation), the gift branch left on an order, a run whose sends wait for the end of quiet
hours, and a held-out run (no email went out: not tagged for reactivation)."""

from __future__ import annotations

from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from core.zones import zone_at_local_hour
from histories.common import Branch, Handle, check, expect_steps, follow, handle_of, html_of
from store.models import Coupon, Customer
from testkit.data import add_customer
from testkit.mail import journey_mails, tracked_links
from testkit.stack import Stack
from testkit.waiting import settle
from workflows.welcome_series import WelcomeSeries

JOURNEY = "welcome_series"
SHIRT = {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90", "category": "apparel"}
SOCKS = {"sku": "SOCK-2", "name": "Wool socks", "price": "9.00", "category": "apparel"}


async def _signed_up(stack: Stack, cid: str, **profile: Any) -> Handle:
    await add_customer(stack, cid, **profile)
    result = await stack.journeys.signed_up({"customer_id": cid})
    return handle_of(stack, WelcomeSeries.run, result, action="started")


async def _welcomed(stack: Stack, cid: str) -> Handle:
    handle = await _signed_up(stack, cid)
    await expect_steps(stack, cid, JOURNEY, "welcome")
    return handle


async def _order(stack: Stack, cid: str) -> None:
    await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o-{cid}", "total": "19.90", "lines": [SHIRT]}
    )


async def ordered(stack: Stack, cid: str) -> Handle:
    """Orders on day 2: feedback is skipped, thank_you with cross-sell on day 7, then leaves."""
    other = f"{cid}-other"
    await add_customer(stack, other)
    await stack.journeys.order_placed(  # makes socks a popular apparel product
        {"customer_id": other, "order_id": f"o-{other}", "total": "9.00", "lines": [SOCKS]}
    )
    handle = await _welcomed(stack, cid)
    await stack.fast_forward(handle, timedelta(days=2, minutes=1))
    await expect_steps(stack, cid, JOURNEY, "welcome", "need_help")
    await _order(stack, cid)
    await stack.fast_forward(handle, timedelta(days=5))
    return handle


async def used_coupon(stack: Stack, cid: str) -> Handle:
    """Orders with the welcome coupon right after the welcome: need_help and feedback are
    skipped, on day 7 the thank-you for using it (code version 3), then leaves."""
    handle = await _welcomed(stack, cid)
    async with stack.sessions() as s:
        code = await s.scalar(select(Coupon.code).where(Coupon.customer_id == cid))
    check(code is not None, f"{cid}: no welcome coupon")
    await stack.journeys.order_placed(
        {
            "customer_id": cid,
            "order_id": f"o-{cid}",
            "total": "17.91",
            "lines": [SHIRT],
            "coupon": code,
        }
    )
    await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    branches = (await handle.query(WelcomeSeries.state)).branches
    check(branches.get("day_7", "").startswith("used_coupon"), f"{cid}: branches {branches}")
    return handle


async def gift_offer_completed(stack: Stack, cid: str) -> Handle:
    """Opens the welcome (loads its pixel), orders nothing: gift_offer on day 7, preferences
    on day 12."""
    handle = await _welcomed(stack, cid)
    (pixel,) = tracked_links(html_of(stack, cid, JOURNEY, 0), "o")
    await follow(stack, pixel, 200, reader=cid)
    await stack.fast_forward(handle, timedelta(days=12, minutes=1))
    return handle


async def gift_offer_then_ordered(stack: Stack, cid: str) -> Handle:
    """Clicks in the welcome, gets the gift offer, then orders: leaves at once (no clock
    moved)."""
    handle = await _welcomed(stack, cid)
    await follow(stack, tracked_links(html_of(stack, cid, JOURNEY, 0), "c")[0], 302, reader=cid)
    await stack.fast_forward(handle, timedelta(days=8))
    await expect_steps(stack, cid, JOURNEY, "welcome", "need_help", "feedback", "gift_offer")
    await _order(stack, cid)
    return handle


async def reactivation(stack: Stack, cid: str) -> Handle:
    """Opens nothing (birthday known): tagged for reactivation on day 7, preferences on 12."""
    await add_customer(stack, cid)
    await stack.journeys.identify(customer_id=cid, traits={"birthday": "1990-05-17"})
    handle = await _signed_up(stack, cid)
    await stack.fast_forward(handle, timedelta(days=12, minutes=1))
    branches = (await handle.query(WelcomeSeries.state)).branches
    check(branches.get("day_7", "").startswith("reactivation"), f"{cid}: branches {branches}")
    return handle


async def quiet_hours_deferred(stack: Stack, cid: str) -> Handle:
    """Signs up at 23:00 local time: the welcome (and every later send) waits for 08:00
    there; otherwise the reactivation path."""
    zone = zone_at_local_hour(23)
    handle = await _signed_up(stack, cid, timezone=zone)
    await settle(0.5)
    decisions = (await handle.query(WelcomeSeries.state)).decisions
    check(bool(decisions) and decisions[0].status == "deferred", f"{cid}: {decisions}")
    await expect_steps(stack, cid, JOURNEY)  # nothing sent at 23:00
    await stack.fast_forward(handle, timedelta(hours=10))
    await expect_steps(stack, cid, JOURNEY, "welcome")
    (mail,) = journey_mails(stack.catcher, cid, JOURNEY)
    local = parsedate_to_datetime(mail["Date"]).astimezone(ZoneInfo(zone))
    check((local.hour, local.minute) == (8, 0), f"{cid}: welcome sent at {local:%H:%M} there")
    await stack.fast_forward(handle, timedelta(days=13))
    return handle


async def held_out_not_tagged(stack: Stack, cid: str) -> Handle:
    """In the control group (holdout_share 1.0): every email is held out; the run walks the
    timeline to day 12."""
    handle = await _signed_up(stack, cid)
    await stack.fast_forward(handle, timedelta(days=12, minutes=1))
    branches = (await handle.query(WelcomeSeries.state)).branches
    check(branches.get("day_7", "").startswith("held_out"), f"{cid}: branches {branches}")
    async with stack.sessions() as s:
        customer = await s.get(Customer, cid)
    tags = customer.attributes.get("tags", []) if customer is not None else None
    check(tags == [], f"{cid}: tags {tags}")
    return handle


BRANCHES = {
    "ordered": Branch(ordered, "ordered", ["welcome", "need_help", "thank_you"]),
    # code version 3: ordered with the welcome coupon -> branch "used_coupon"
    "used_coupon": Branch(used_coupon, "ordered", ["welcome", "thank_you"]),
    "gift_offer_completed": Branch(
        gift_offer_completed,
        "completed",
        ["welcome", "need_help", "feedback", "gift_offer", "preferences"],
    ),
    "gift_offer_then_ordered": Branch(
        gift_offer_then_ordered, "ordered", ["welcome", "need_help", "feedback", "gift_offer"]
    ),
    "reactivation": Branch(
        reactivation, "completed", ["welcome", "need_help", "feedback", "preferences"]
    ),
    "quiet_hours_deferred": Branch(
        quiet_hours_deferred, "completed", ["welcome", "need_help", "feedback", "preferences"]
    ),
    # code version 2: not tagged (version 1 tagged the held-out customer for reactivation)
    "held_out_not_tagged": Branch(
        held_out_not_tagged, "completed", [], journeys={"welcome_series": {"holdout_share": 1.0}}
    ),
}
