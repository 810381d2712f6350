"""Journeys decide on what happened, not on what was supposed to happen (issue 12): a "did
they react" decision counts only emails that went out; the control group is never sunset or
tagged; shipping notices survive long shipment ids and an unsubscribe; browse follow-up stays
on its product; a click does not stop cart reminders unless the shop says so."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.contracts import SweepInput
from journeys.config import BirthdayConfig, WinBackConfig
from store.migrate import upgrade
from store.models import Customer, JourneyDecision, SendLog, Suppression
from testkit.data import (
    TEE,
    abandon_cart,
    add_customer,
    email_for,
    emails_from_another_journey,
    lapsed_customer,
)
from testkit.engagement import PERSON, read_later
from testkit.mail import journey_mails, parts, steps_of, tracked_links, wait_for_mail
from testkit.stack import Stack
from testkit.waiting import eventually
from workflows.browse_follow_up import BrowseFollowUp
from workflows.nurture import NewCustomerNurture
from workflows.sweep import DailySweep
from workflows.welcome_series import WelcomeSeries
from workflows.win_back import WinBack

AS_OF = datetime.now(UTC).replace(microsecond=0)
SHIRT = {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90", "category": "apparel"}
BOOTS = {"sku": "BOOT-4", "name": "Hiking boots", "price": "129.00", "category": "outdoor"}
LACES = {"sku": "LACE-1", "name": "Spare laces", "price": "4.00", "category": "outdoor"}
# Every email of another journey within 30 days caps: nothing of this journey goes out.
CAPPED = {"frequency_cap": {"window": "30d", "max_emails": 1}}


@pytest.fixture
async def db_url(tmp_path: Path) -> str:
    """A store of its own for each test: the win-back sweep looks at every customer in it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'journeys.db'}"
    await upgrade(url)
    return url


async def suppression_of(stack: Stack, cid: str) -> Suppression | None:
    async with stack.sessions() as s:
        return await s.get(Suppression, email_for(cid))


async def tags_of(stack: Stack, cid: str) -> list[str]:
    async with stack.sessions() as s:
        customer = await s.get(Customer, cid)
    assert customer is not None
    return list(customer.attributes.get("tags", []))


# -- win-back: no sunset for who never got its emails ----------------------------------------


async def swept_into_win_back(stack: Any, label: str, *, other_emails: int = 0) -> tuple[str, Any]:
    """A lapsed repeat buyer (last order 120 days ago) whom the day's sweep starts win-back for."""
    cid = f"{label}-{uuid.uuid4().hex[:6]}"
    await lapsed_customer(stack, cid, as_of=AS_OF, orders=[300, 120])
    if other_emails:
        await emails_from_another_journey(stack, cid, journey="cart_recovery", count=other_emails)
    handle = await stack.client.start_workflow(
        DailySweep.run,
        SweepInput(
            win_back=stack.journeys.config("win_back", WinBackConfig),
            birthday=stack.journeys.config("birthday", BirthdayConfig),
            as_of=AS_OF,
        ),
        id=f"sweep-{cid}",
        task_queue=stack.settings.temporal_task_queue,
    )
    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.counts["win_back"].started == 1
    last = AS_OF - timedelta(days=120)
    return cid, stack.client.get_workflow_handle_for(WinBack.run, f"win-back:{cid}:{last:%Y%m%d}")


async def test_a_held_out_customer_walks_win_back_and_is_never_sunset(make_stack):
    stack = await make_stack(win_back={"holdout_share": 1.0})
    cid, handle = await swept_into_win_back(stack, "held-out")
    await stack.fast_forward(handle, timedelta(days=7 + 15, minutes=2))
    result = await asyncio.wait_for(handle.result(), timeout=20)

    assert [(d.step, d.status) for d in result.decisions] == [
        ("win_back_offer", "held_out"),
        ("last_call", "held_out"),
    ]
    assert result.outcome == "held_out"
    assert await suppression_of(stack, cid) is None
    # The control group is not wiped from every journey: cart recovery still reaches them.
    cart = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(cart, timedelta(hours=1, minutes=5))
    assert len(await wait_for_mail(stack.catcher, email_for(cid), 1)) == 1
    await cart.terminate("test done")


async def test_an_offer_and_last_call_both_capped_sunset_nobody(make_stack):
    stack = await make_stack(win_back=CAPPED)
    cid, handle = await swept_into_win_back(stack, "capped", other_emails=1)
    await stack.fast_forward(handle, timedelta(days=7 + 15, minutes=2))
    result = await asyncio.wait_for(handle.result(), timeout=20)

    assert [(d.step, d.code) for d in result.decisions] == [
        ("win_back_offer", "capped"),
        ("last_call", "capped"),
    ]
    assert result.outcome == "not_mailed"
    assert journey_mails(stack.catcher, cid, "win_back") == []
    assert await suppression_of(stack, cid) is None
    async with stack.sessions() as s:
        decision = await s.scalar(
            select(JourneyDecision).where(
                JourneyDecision.customer_id == cid, JourneyDecision.name == "after_last_call"
            )
        )
    assert decision is not None and decision.value == "not_mailed"


# -- welcome series: no reactivation tag for who got nothing ---------------------------------


async def signed_up(stack: Any, cid: str) -> Any:
    result = await stack.journeys.signed_up({"customer_id": cid})
    assert result.action == "started"
    return stack.client.get_workflow_handle_for(WelcomeSeries.run, result.workflow_id)


async def test_a_held_out_customer_is_not_tagged_for_reactivation(make_stack):
    stack = await make_stack(welcome_series={"holdout_share": 1.0})
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await signed_up(stack, cid)
    await stack.fast_forward(handle, timedelta(days=12, minutes=1))
    result = await asyncio.wait_for(handle.result(), timeout=20)

    assert result.outcome == "completed" and result.sent == []
    assert {d.status for d in result.decisions} == {"held_out"}
    assert "reactivation" not in await tags_of(stack, cid)
    state = await handle.query(WelcomeSeries.state)
    assert state.branches["day_7"].startswith("held_out")


async def test_a_customer_who_got_no_welcome_email_is_not_tagged_for_reactivation(make_stack):
    stack = await make_stack(welcome_series=CAPPED)
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await emails_from_another_journey(stack, cid, journey="cart_recovery", count=1)
    handle = await signed_up(stack, cid)
    await stack.fast_forward(handle, timedelta(days=12, minutes=1))
    result = await asyncio.wait_for(handle.result(), timeout=20)

    assert result.sent == [] and {d.code for d in result.decisions} == {"capped"}
    assert "reactivation" not in await tags_of(stack, cid)
    state = await handle.query(WelcomeSeries.state)
    assert state.branches["day_7"].startswith("not_mailed")


# -- nurture: every shipping notice, whatever the id and after an unsubscribe ---------------


async def first_order(stack: Any, cid: str) -> Any:
    await add_customer(stack, cid)
    result = await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o1-{cid}", "total": "19.90", "lines": [SHIRT]}
    )
    assert result.action == "started"
    await wait_for_mail(stack.catcher, email_for(cid), 1)
    return stack.client.get_workflow_handle_for(NewCustomerNurture.run, result.workflow_id)


async def shipped(stack: Any, cid: str, shipment_id: str, url: str = "https://t.example/1") -> None:
    await stack.journeys.order_shipped(
        {
            "customer_id": cid,
            "order_id": f"o1-{cid}",
            "shipment_id": shipment_id,
            "tracking_url": url,
        }
    )


def nurture_steps(stack: Any, cid: str) -> list[str]:
    return steps_of(journey_mails(stack.catcher, cid, "new_customer_nurture"))


async def test_two_long_shipment_ids_sharing_a_prefix_each_get_their_notice(stack):
    cid = stack.new_customer_id()
    handle = await first_order(stack, cid)
    prefix = "DHL-EXPRESS-" + "0" * 50  # 62 characters: "shipping_" + it fills a step name
    await shipped(stack, cid, f"{prefix}-1", "https://t.example/1")
    await wait_for_mail(stack.catcher, email_for(cid), 2)
    await shipped(stack, cid, f"{prefix}-2", "https://t.example/2")
    await wait_for_mail(stack.catcher, email_for(cid), 3)

    mails = journey_mails(stack.catcher, cid, "new_customer_nurture")
    assert len(mails) == 3
    notices = [parts(m)[0] for m in mails[1:]]
    assert "https://t.example/1" in notices[0] and "https://t.example/2" in notices[1]
    steps = steps_of(mails)[1:]
    assert len(set(steps)) == 2 and all(len(s) <= 64 for s in steps)

    async def statuses() -> list[str]:
        async with stack.sessions() as s:
            rows = await s.scalars(  # the emails (its texts are skipped: no phone)
                select(SendLog.status).where(SendLog.customer_id == cid, SendLog.channel == "email")
            )
            return list(rows)

    assert await eventually(statuses, lambda got: got == ["sent"] * 3) == ["sent"] * 3
    await handle.terminate("test done")


async def test_an_unsubscribe_keeps_the_shipping_notices_of_nurture(stack):
    cid = stack.new_customer_id()
    handle = await first_order(stack, cid)
    await stack.journeys.unsubscribe({"customer_id": cid})  # told to the run before ...
    await shipped(stack, cid, f"o1-{cid}")  # ... this shipment (in order, per customer)
    await wait_for_mail(stack.catcher, email_for(cid), 2)
    assert nurture_steps(stack, cid) == ["thanks", f"shipping_o1-{cid}"]

    await stack.fast_forward(handle, timedelta(days=60, minutes=1))
    result = await asyncio.wait_for(handle.result(), timeout=20)
    assert result.outcome == "unsubscribed"
    assert nurture_steps(stack, cid) == ["thanks", f"shipping_o1-{cid}"]  # no marketing
    skipped = {d.step: d.code for d in result.decisions if d.status == "skipped"}
    assert skipped == dict.fromkeys(
        ["care", "review", "one_month_gift", "repurchase", "offer"], "unsubscribed"
    ) | {  # its texts: this customer gave no phone number
        "thanks_sms": "no_phone",
        f"shipping_sms_o1-{cid}": "no_phone",
    }


async def test_an_unsubscribe_the_gate_sees_first_keeps_the_shipping_notices(stack):
    """The unsubscribe reached the store but not (yet) the run: the gate skips the day-3
    care; the run stays for the shipping notice."""
    cid = stack.new_customer_id()
    handle = await first_order(stack, cid)
    async with stack.sessions.begin() as s:
        customer = await s.get(Customer, cid)
        assert customer is not None
        customer.subscribed = False
    await stack.fast_forward(handle, timedelta(days=3, minutes=1))
    await shipped(stack, cid, f"o1-{cid}")
    await wait_for_mail(stack.catcher, email_for(cid), 2)
    assert nurture_steps(stack, cid) == ["thanks", f"shipping_o1-{cid}"]
    state = await handle.query(NewCustomerNurture.state)
    assert state.outcome is None  # still running
    assert state.branches["marketing"].startswith("stopped")
    await handle.terminate("test done")


async def test_a_complaint_still_ends_nurture_at_once(stack):
    cid = stack.new_customer_id()
    handle = await first_order(stack, cid)
    await stack.journeys.complaint({"customer_id": cid})
    result = await asyncio.wait_for(handle.result(), timeout=20)
    assert result.outcome == "complaint"


# -- browse follow-up: the product that started it ------------------------------------------


async def test_browse_follow_up_stays_on_the_product_that_started_it(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await stack.journeys.product_viewed({"customer_id": cid, "product": BOOTS})
    started = await stack.journeys.product_viewed({"customer_id": cid, "product": BOOTS})
    assert started.action == "started_or_signalled"
    handle = stack.client.get_workflow_handle_for(BrowseFollowUp.run, started.workflow_id)
    await stack.journeys.product_viewed({"customer_id": cid, "product": LACES})  # a glance

    await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    (reviews,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
    assert reviews["Subject"] == "What customers say about Hiking boots"
    assert "https://shop.test/reviews/BOOT-4" in parts(reviews)[0]
    await stack.journeys.order_placed(  # buying the boots still ends it
        {"customer_id": cid, "order_id": f"o-{cid}", "total": "129.00", "lines": [BOOTS]}
    )
    assert (await asyncio.wait_for(handle.result(), timeout=20)).outcome == "bought"


# -- cart recovery: a click alone does not stop the reminders --------------------------------


async def test_after_a_click_the_reminders_still_come_by_default(stack, http):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    (mail,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
    await read_later(stack, cid)  # a person's click, not a scanner's at delivery
    assert (await http.get(tracked_links(parts(mail)[1])[0], headers=PERSON)).status_code == 302

    await stack.fast_forward(handle, timedelta(days=7))
    result = await asyncio.wait_for(handle.result(), timeout=20)
    assert result.sent == ["reminder_1", "reminder_2", "reminder_3", "reminder_4", "discount"]
