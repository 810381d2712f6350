"""Welcome series, every branch, driven through the shop's API and the links in the mail."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core.zones import zone_at_local_hour
from store.models import Coupon, Customer, JourneyDecision, SendLog
from testkit.data import add_customer, email_for
from testkit.engagement import PERSON, read_later
from testkit.mail import journey_mails, parts, steps_of, tracked_links, wait_for_mail
from testkit.waiting import PATIENCE, eventually, eventually_passes
from workflows.welcome_series import WelcomeSeries

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
SHIRT = {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90", "category": "apparel"}
SOCKS = {"sku": "SOCK-2", "name": "Wool socks", "price": "9.00", "category": "apparel"}


async def sign_up(stack, cid: str, **profile):
    await add_customer(stack, cid, **profile)
    result = await stack.journeys.signed_up({"customer_id": cid})
    assert result.action == "started"
    return stack.client.get_workflow_handle_for(WelcomeSeries.run, result.workflow_id)


async def welcome_mails(stack, cid: str, count: int):
    await wait_for_mail(stack.catcher, email_for(cid), count)
    return journey_mails(stack.catcher, cid, "welcome_series")


async def test_welcome_comes_at_once_with_a_first_order_coupon_of_its_own(stack):
    cid = stack.new_customer_id()
    await sign_up(stack, cid)

    (mail,) = await welcome_mails(stack, cid, 1)
    text, html = parts(mail)
    async with stack.sessions() as s:
        coupon = await s.scalar(select(Coupon).where(Coupon.customer_id == cid))
    assert coupon is not None and coupon.code.startswith("WELCOME-")
    assert coupon.code in text and coupon.code in html
    assert mail["Subject"] == "Welcome, Ada! Here is 10% off your first order"
    assert "https://shop.test/account" in text

    again = await stack.journeys.signed_up({"customer_id": cid, "message_id": "another"})
    assert again.action == "already_welcomed"  # once per customer, ever


async def test_a_customer_who_ordered_gets_thanks_with_cross_sell_and_leaves(stack, http):
    other = stack.new_customer_id()
    await add_customer(stack, other)
    await stack.journeys.order_placed(  # makes socks a popular apparel product
        {"customer_id": other, "order_id": f"o-{other}", "total": "9.00", "lines": [SOCKS]}
    )
    cid = stack.new_customer_id()
    handle = await sign_up(stack, cid)
    await stack.fast_forward(handle, timedelta(days=2, minutes=1))
    await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o-{cid}", "total": "19.90", "lines": [SHIRT]}
    )
    await stack.fast_forward(handle, timedelta(days=5))
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)

    assert result.outcome == "ordered"
    mails = journey_mails(stack.catcher, cid, "welcome_series")
    assert steps_of(mails) == ["welcome", "need_help", "thank_you"]  # feedback: skipped
    text, _ = parts(mails[-1])
    assert "Wool socks" in text and "Blue T-shirt" not in text.split("also like")[-1]
    skipped = [d for d in result.decisions if d.step == "feedback"]
    assert skipped[0].status == "skipped" and skipped[0].reason == "ordered"
    async with stack.sessions() as s:
        decision = await s.scalar(select(JourneyDecision).where(JourneyDecision.customer_id == cid))
    assert decision is not None and (decision.name, decision.value) == ("day_7", "ordered")


async def test_opened_but_not_ordered_gets_the_gift_then_preferences(stack, http):
    cid = stack.new_customer_id()
    handle = await sign_up(stack, cid)
    (welcome,) = await welcome_mails(stack, cid, 1)
    _, html = parts(welcome)
    (pixel,) = tracked_links(html, "o")
    await read_later(stack, cid)  # a person, not a mailbox provider's fetch at delivery
    assert (await http.get(pixel, headers=PERSON)).status_code == 200  # the client loads it

    await stack.fast_forward(handle, timedelta(days=12, minutes=1))
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)

    assert result.outcome == "completed"
    mails = journey_mails(stack.catcher, cid, "welcome_series")
    assert steps_of(mails) == ["welcome", "need_help", "feedback", "gift_offer", "preferences"]
    gift_text, _ = parts(mails[3])
    assert "GIFT-" in gift_text and "15% off" in gift_text
    prefs_text, _ = parts(mails[4])
    assert "birthday" in prefs_text  # unknown birthday: asked for
    state = await handle.query(WelcomeSeries.state)
    assert state.branches["day_7"].startswith("gift_offer")


async def test_the_gift_branch_leaves_at_once_on_an_order(stack, http):
    cid = stack.new_customer_id()
    handle = await sign_up(stack, cid)
    (welcome,) = await welcome_mails(stack, cid, 1)
    _, html = parts(welcome)
    await read_later(stack, cid)
    assert (await http.get(tracked_links(html, "c")[0], headers=PERSON)).status_code == 302
    await stack.fast_forward(handle, timedelta(days=8))
    assert steps_of(journey_mails(stack.catcher, cid, "welcome_series"))[-1] == "gift_offer"

    await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o-{cid}", "total": "19.90", "lines": [SHIRT]}
    )
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)  # no clock moved
    assert result.outcome == "ordered"
    assert "preferences" not in steps_of(journey_mails(stack.catcher, cid, "welcome_series"))


async def test_nothing_opened_tags_for_reactivation_and_sends_preferences(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await stack.journeys.identify(customer_id=cid, traits={"birthday": "1990-05-17"})
    handle = await sign_up(stack, cid)
    await stack.fast_forward(handle, timedelta(days=12, minutes=1))
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)

    assert result.outcome == "completed"
    mails = journey_mails(stack.catcher, cid, "welcome_series")
    assert steps_of(mails) == ["welcome", "need_help", "feedback", "preferences"]
    assert "birthday" not in parts(mails[-1])[0]  # known already
    async with stack.sessions() as s:
        customer = await s.get(Customer, cid)
    assert customer is not None and customer.attributes["tags"] == ["reactivation"]
    state = await handle.query(WelcomeSeries.state)
    assert state.branches["day_7"].startswith("reactivation")


async def test_quiet_hours_move_a_send_to_8_in_the_customers_own_time_zone(stack):
    night, day = stack.new_customer_id(), stack.new_customer_id()
    night_zone, day_zone = zone_at_local_hour(23), zone_at_local_hour(11)
    night_handle = await sign_up(stack, night, timezone=night_zone)
    await sign_up(stack, day, timezone=day_zone)

    assert len(await welcome_mails(stack, day, 1)) == 1  # 11:00 there: at once
    await asyncio.sleep(0.5)
    assert journey_mails(stack.catcher, night, "welcome_series") == []  # 23:00 there
    state = await eventually(  # its send is decided by the worker, in its own time
        lambda: night_handle.query(WelcomeSeries.state), lambda state: bool(state.decisions)
    )
    assert state.decisions[0].status == "deferred"
    assert state.decisions[0].reason.startswith(f"quiet_hours: {night_zone}")

    await stack.fast_forward(night_handle, timedelta(hours=10))
    (mail,) = await welcome_mails(stack, night, 1)
    local = parsedate_to_datetime(mail["Date"]).astimezone(ZoneInfo(night_zone))
    assert (local.hour, local.minute) == (8, 0)
    await night_handle.terminate("test done")


async def test_welcome_and_nurture_together_stay_within_the_frequency_cap(make_stack):
    stack = await make_stack(
        new_customer_nurture={"frequency_cap": {"window": "1d", "max_emails": 1}}
    )
    cid = stack.new_customer_id()
    handle = await sign_up(stack, cid)
    await welcome_mails(stack, cid, 1)
    result = await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o-{cid}", "total": "19.90", "lines": [SHIRT]}
    )
    assert result.action == "started"  # the first order starts nurture

    async def decided():  # nurture's worker decides its first send in its own time
        async with stack.sessions() as s:
            rows = (await s.scalars(select(SendLog).where(SendLog.customer_id == cid))).all()
        decisions = {(r.journey, r.step): (r.status, r.reason) for r in rows}
        assert decisions[("welcome_series", "welcome")] == ("sent", None)
        status, reason = decisions[("new_customer_nurture", "thanks")]
        assert status == "skipped" and reason.startswith("capped: 1 emails from other journeys")

    await eventually_passes(decided)
    assert len(stack.catcher.to(email_for(cid))) == 1
    await handle.terminate("test done")
