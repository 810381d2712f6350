"""Event time is when it happened (docs/architecture.md decision 19): late and out-of-order
events are kept, and decisions that depend on order use their own time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from core.contracts import CartChange
from starter.ingest.events import event_time
from store.models import Cart, Event
from testkit.data import HAT, MUG, TEE, add_customer
from testkit.stack import WRITE_KEY
from workflows.cart_recovery import CartRecovery

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        # A client whose clock is 5 minutes fast: its times move back by the skew.
        ({"timestamp": NOW - 2 * MIN + 5 * MIN, "sent_at": NOW + 5 * MIN}, NOW - 2 * MIN),
        # ... and one 3 hours slow, that queued the call offline for an hour.
        (
            {"timestamp": NOW - 4 * 60 * MIN, "sent_at": NOW - 3 * 60 * MIN},
            NOW - 60 * MIN,
        ),
        # originalTimestamp when there is no timestamp, corrected the same way.
        ({"original_timestamp": NOW - MIN, "sent_at": NOW}, NOW - MIN),
        # Relayed by Segment (receivedAt): its timestamp is corrected already.
        (
            {"timestamp": NOW - 9 * MIN, "sent_at": NOW - MIN, "received_at": NOW - MIN},
            NOW - 9 * MIN,
        ),
        # A server library that sends no sentAt: its timestamp as it is.
        ({"timestamp": NOW - 30 * MIN}, NOW - 30 * MIN),
        # Never after it arrived; no time at all: when it arrived.
        ({"timestamp": NOW + 60 * MIN}, NOW),
        ({"timestamp": None}, NOW),
        # A clock beyond the calendar does not break anything.
        ({"timestamp": datetime.max.replace(tzinfo=UTC), "sent_at": NOW - MIN}, NOW),
    ],
)
def test_an_events_time_is_corrected_for_the_senders_clock_as_segment_does(call, expected):
    assert event_time(now=NOW, **{"timestamp": None, **call}) == expected


async def _run_status(stack, customer_id: str) -> WorkflowExecutionStatus | None:
    try:
        described = await stack.client.get_workflow_handle(
            f"cart-recovery:{customer_id}"
        ).describe()
    except RPCError:
        return None
    status: WorkflowExecutionStatus | None = described.status
    return status


async def _order_signals(handle) -> int:
    history = await handle.fetch_history()
    return sum(
        1
        for e in history.events
        if e.workflow_execution_signaled_event_attributes.signal_name == "order_placed"
    )


async def test_a_cart_stamped_before_an_order_for_it_starts_no_cart_recovery(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    now = datetime.now(UTC)
    await stack.journeys.order_placed(
        {
            "customer_id": cid,
            "order_id": f"o-{cid}",
            "total": "39.80",
            "lines": [TEE],
            "occurred_at": now - 5 * MIN,
        }
    )
    late = await stack.journeys.cart_updated(  # a client that was offline sends it now
        {"customer_id": cid, "lines": [TEE], "occurred_at": now - 10 * MIN}
    )
    assert late.recorded and late.action == "outdated"
    assert await _run_status(stack, cid) is None
    async with stack.sessions() as s:
        assert await s.get(Cart, cid) is None  # the order closed that cart; nothing to keep


async def test_the_same_order_again_never_ends_a_newer_cart_recovery(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    order = {"customer_id": cid, "order_id": f"o-{cid}", "total": "39.80", "lines": [TEE]}
    first = await stack.journeys.order_placed({**order, "message_id": f"m1-{cid}"})
    assert first.action == "started"  # the first order starts the nurture
    result = await stack.journeys.cart_updated({"customer_id": cid, "lines": [MUG]})
    handle = stack.client.get_workflow_handle_for(CartRecovery.run, str(result.workflow_id))

    again = await stack.journeys.order_placed({**order, "message_id": f"m2-{cid}"})
    once_more = await stack.journeys.order_placed(order)  # no message id at all
    assert again.duplicate and once_more.duplicate
    assert await _order_signals(handle) == 0
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await handle.signal(CartRecovery.cart_updated, CartChange(empty=True))


async def test_an_order_placed_before_the_cart_changed_does_not_end_its_cart_recovery(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    result = await stack.journeys.cart_updated({"customer_id": cid, "lines": [MUG]})
    handle = stack.client.get_workflow_handle_for(CartRecovery.run, str(result.workflow_id))
    late_order = await stack.journeys.order_placed(  # for another cart, an hour ago
        {
            "customer_id": cid,
            "order_id": f"o-{cid}",
            "total": "39.80",
            "lines": [TEE],
            "occurred_at": datetime.now(UTC) - 60 * MIN,
        }
    )
    assert late_order.recorded
    assert await _order_signals(handle) == 0
    async with stack.sessions() as s:
        cart = await s.get(Cart, cid)
    assert cart is not None and cart.status == "active"
    await handle.signal(CartRecovery.cart_updated, CartChange(empty=True))


async def test_products_count_in_any_order_but_not_before_the_cart_came_whole(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    now = datetime.now(UTC)
    whole = await stack.journeys.cart_updated(
        {"customer_id": cid, "lines": [TEE], "occurred_at": now - 10 * MIN}
    )
    later = await stack.journeys.product_added(
        {"customer_id": cid, **HAT, "occurred_at": now - 2 * MIN}
    )
    earlier = await stack.journeys.product_added(  # arrives after HAT, happened before it
        {"customer_id": cid, **MUG, "occurred_at": now - 4 * MIN}
    )
    stale = await stack.journeys.product_removed(  # before the whole cart: it holds TEE
        {"customer_id": cid, **TEE, "occurred_at": now - 20 * MIN}
    )
    older_whole = await stack.journeys.cart_updated(
        {"customer_id": cid, "lines": [], "occurred_at": now - 3 * MIN}
    )
    assert [r.action for r in (whole, later, earlier, stale, older_whole)] == [
        "started_or_signalled",
        "started_or_signalled",
        "started_or_signalled",
        "outdated",
        "outdated",
    ]
    async with stack.sessions() as s:
        cart = await s.get(Cart, cid)
    assert cart is not None
    assert sorted(line["sku"] for line in cart.lines["items"]) == ["HAT-3", "MUG-7", "TEE-1"]
    assert cart.updated_at == now - 2 * MIN
    handle = stack.client.get_workflow_handle_for(CartRecovery.run, str(whole.workflow_id))
    await handle.signal(CartRecovery.cart_updated, CartChange(empty=True))


async def test_segment_times_are_kept_as_the_client_meant_them(http, stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    now = datetime.now(UTC)
    skew = timedelta(hours=2)  # the phone's clock is two hours fast
    call = {
        "userId": cid,
        "event": "Some Custom Event",
        "messageId": f"skewed-{cid}",
        "timestamp": (now - 30 * MIN + skew).isoformat(),
        "sentAt": (now + skew).isoformat(),
    }
    future = {
        "userId": cid,
        "event": "Another Custom Event",
        "timestamp": (now + 24 * 60 * MIN).isoformat(),
    }
    headers = {"Authorization": f"Bearer {WRITE_KEY}"}
    for body in (call, future):
        answer = await http.post("/v1/track", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
    async with stack.sessions() as s:
        rows = {e.name: e for e in await s.scalars(select(Event).where(Event.customer_id == cid))}
    skewed = rows["Some Custom Event"].occurred_at
    assert abs(skewed - (now - 30 * MIN)) < timedelta(seconds=5)
    early = rows["Another Custom Event"]
    assert early.occurred_at <= early.received_at  # never after it arrived
