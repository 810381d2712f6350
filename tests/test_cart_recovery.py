"""Cart recovery end to end: starter API -> Temporal -> worker -> SMTP catcher + store,
at the journey's real length in virtual time."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime

from sqlalchemy import select
from temporalio.api.enums.v1 import EventType

from core import tokens
from core.ids import JOURNEY_STEP
from store.models import Coupon, Event, JourneyEntry, SendLog
from testkit.data import HAT, MUG, TEE, abandon_cart, add_customer, email_for
from testkit.engagement import PERSON, read_later
from testkit.mail import journey_mails, parts, steps_of, tracked_links, wait_for_mail
from testkit.stack import SECRET
from testkit.waiting import PATIENCE, eventually_passes
from workflows.cart_recovery import CartRecovery


def clicked_through(html: str) -> list[str]:
    """Where the tracked links of an HTML part lead."""
    found = re.findall(r'href="https://shop\.test/t/c/([^"]+)"', html)
    return [tokens.verify(t, secret=SECRET, purpose="click")["u"] for t in found]  # type: ignore[index]


STEP_AFTER = [
    timedelta(hours=1),
    timedelta(days=2),
    timedelta(days=3),
    timedelta(days=5),
    timedelta(days=7),
]


async def test_five_emails_arrive_at_their_configured_times_with_the_cart(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid, first_name="Ada")
    handle = await abandon_cart(stack, cid, TEE, MUG)
    started = (await handle.describe()).start_time

    await stack.fast_forward(handle, timedelta(days=7, hours=1))
    result = await handle.result()

    assert result.outcome == "completed"
    assert result.sent == ["reminder_1", "reminder_2", "reminder_3", "reminder_4", "discount"]
    mails = await wait_for_mail(stack.catcher, email_for(cid), 5)
    assert len(mails) == 5
    for mail, after in zip(mails, STEP_AFTER, strict=True):
        sent_at = parsedate_to_datetime(mail["Date"])
        assert abs(sent_at - (started + after)) < timedelta(seconds=30), (mail["Subject"], after)
        text, html = parts(mail)
        for body in (text, html):
            assert "Ada" in body
            assert "Blue T-shirt" in body and "Coffee mug" in body
            assert "39.80 EUR" in body  # 2 x 19.90
            assert "48.30 EUR" in body  # cart total
        assert f"https://shop.test/checkout/{cid}" in text
        assert f"https://shop.test/checkout/{cid}" in clicked_through(html)  # via the tracker
        assert mail["List-Unsubscribe"].startswith("<https://shop.test/u/")
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe_url = mail["List-Unsubscribe"].strip("<>")
        assert unsubscribe_url in text and unsubscribe_url in html
        assert email_for(cid) not in unsubscribe_url
        assert mail.get_content_type() == "multipart/alternative"
    assert mails[0]["Subject"] == "Ada, you left something in your cart"
    assert len({m["Message-ID"] for m in mails}) == 5

    discount_text, _ = parts(mails[-1])
    async with stack.sessions() as s:
        coupon = await s.scalar(select(Coupon).where(Coupon.customer_id == cid))
        rows = (await s.scalars(select(SendLog).where(SendLog.customer_id == cid))).all()
    assert coupon is not None and coupon.percent_off == 10
    assert coupon.code in discount_text
    assert mails[-1]["Subject"].startswith("10% off")
    assert [r.status for r in rows] == ["sent"] * 5
    assert [r.message_id for r in rows] == [m["Message-ID"] for m in mails]


async def test_order_after_first_reminder_ends_the_journey_at_once(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    assert len(await wait_for_mail(stack.catcher, email_for(cid), 1)) == 1

    await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o-{cid}", "total": "39.80", "lines": [TEE]}
    )
    # No clock moves from here: the run can only end by reacting to the order signal.
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)

    assert result.outcome == "ordered"
    assert result.sent == ["reminder_1"]
    history = await handle.fetch_history()
    signalled = [
        e.event_time.ToDatetime()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and e.workflow_execution_signaled_event_attributes.signal_name == "order_placed"
    ]
    closed = history.events[-1]
    assert closed.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    assert closed.event_time.ToDatetime() - signalled[0] < timedelta(seconds=1)
    await asyncio.sleep(0.5)
    assert steps_of(journey_mails(stack.catcher, cid, "cart_recovery")) == ["reminder_1"]


async def test_order_whose_signal_never_came_is_caught_before_the_next_send(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=2))
    # The order reaches the store, but not the workflow (as if the signal was lost).
    from store import orders
    from store.models import utcnow

    async with stack.sessions.begin() as s:
        await orders.record_order(
            s,
            order_id=f"o-{cid}",
            customer_id=cid,
            total=Decimal("39.80"),
            currency="EUR",
            lines=[TEE],
            placed_at=utcnow(),
        )
    await stack.fast_forward(handle, timedelta(days=2))
    result = await handle.result()

    assert result.outcome == "ordered"
    assert len(stack.catcher.to(email_for(cid))) == 1
    assert result.decisions[-1].status == "skipped" and result.decisions[-1].reason == "ordered"


async def test_cart_change_before_first_reminder_restarts_the_wait_and_shows_the_new_cart(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(minutes=40))
    await abandon_cart(stack, cid, HAT, MUG)  # the customer came back and changed the cart

    await stack.fast_forward(handle, timedelta(minutes=40))  # 80 min after the first cart
    assert stack.catcher.to(email_for(cid)) == []

    await stack.fast_forward(handle, timedelta(minutes=25))  # 65 min after the change
    mails = await wait_for_mail(stack.catcher, email_for(cid), 1)
    assert len(mails) == 1
    text, html = parts(mails[0])
    assert "Wool hat" in text and "Coffee mug" in html
    assert "Blue T-shirt" not in text and "Blue T-shirt" not in html


async def test_emptied_cart_ends_the_journey_without_email(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(minutes=10))
    await abandon_cart(stack, cid)  # no lines: emptied

    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.outcome == "cart_emptied"
    assert stack.catcher.to(email_for(cid)) == []


async def test_the_same_cart_event_twice_starts_one_journey(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    event = {"customer_id": cid, "lines": [TEE], "message_id": f"msg-{cid}"}
    first = await stack.journeys.cart_updated(event)
    second = await stack.journeys.cart_updated(event)

    assert first.recorded and not first.duplicate
    assert second.duplicate
    handle = stack.client.get_workflow_handle_for(CartRecovery.run, first.workflow_id)
    history = await handle.fetch_history()
    signals = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    assert len(signals) == 1
    async with stack.sessions() as s:
        events = (await s.scalars(select(Event).where(Event.customer_id == cid))).all()
    assert len(events) == 1
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    assert len(await wait_for_mail(stack.catcher, email_for(cid), 1)) == 1
    await handle.terminate("test done")


async def test_after_a_click_only_the_discount_is_still_sent(stack, http, journeys_dir):
    journeys_dir(cart_recovery={"skip_reminders_after_click": True})  # off unless switched on
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    (mail,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
    _, html = parts(mail)
    await read_later(stack, cid)  # a person, not a scanner at delivery
    assert (await http.get(tracked_links(html)[0], headers=PERSON)).status_code == 302

    await stack.fast_forward(handle, timedelta(days=7))
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.sent == ["reminder_1", "discount"]
    assert steps_of(journey_mails(stack.catcher, cid, "cart_recovery")) == result.sent
    skipped = [d for d in result.decisions if d.status == "skipped"]
    assert [(d.step, d.reason) for d in skipped] == [
        ("reminder_2", "clicked"),
        ("reminder_3", "clicked"),
        ("reminder_4", "clicked"),
    ]


async def test_a_full_run_writes_one_journey_step_per_task_and_records_its_entry_locally(stack):
    """Issue 19's history budget: the full path's five emails with nothing the UI never shows.
    JourneyStep is set once per workflow task at most (a value the same task replaces, like
    ``sent:reminder_1`` before ``waiting:reminder_2``, is never written), the entry is recorded
    by a local activity (one marker, not three events and a workflow task), and the step the
    UI shows while the run sleeps is still the one it waits for."""
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)

    async def waiting_shown() -> None:
        shown = (await handle.describe()).typed_search_attributes.get(JOURNEY_STEP)
        assert shown == "waiting:reminder_1"

    await eventually_passes(waiting_shown)
    await stack.fast_forward(handle, timedelta(days=7, hours=1))
    result = await handle.result()
    assert len(result.sent) == 5

    events = [
        e
        for e in (await handle.fetch_history()).events
        if e.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIME_SKIPPING_TRANSITIONED
    ]
    upserts_per_task: list[int] = [0]
    scheduled: list[str] = []
    for e in events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            upserts_per_task.append(0)
        elif e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes
            upserts_per_task[-1] += "JourneyStep" in fields.indexed_fields
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled.append(e.activity_task_scheduled_event_attributes.activity_type.name)
    assert max(upserts_per_task) == 1, upserts_per_task
    assert scheduled == ["send_step"] * 5
    markers = [e for e in events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert [m.marker_recorded_event_attributes.marker_name for m in markers].count(
        "core_local_activity"
    ) == 1
    async with stack.sessions() as s:
        entries = await s.scalars(select(JourneyEntry).where(JourneyEntry.customer_id == cid))
        assert [e.journey for e in entries.all()] == ["cart_recovery"]
    assert len(events) <= 81, len(events)  # 91 before (BENCHMARKS.md, history events)
