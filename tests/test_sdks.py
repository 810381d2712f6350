"""The official Segment and RudderStack Python SDKs deliver identify and track, sending as
they do (gzip bodies, batches, the write key as Basic user and in the body, RudderStack's
traits under context.traits), to the API served by uvicorn on a free port."""

from __future__ import annotations

import asyncio
from typing import Any

from rudderstack.analytics import Client as RudderClient  # type: ignore[import-untyped]
from segment.analytics import Client as SegmentClient  # type: ignore[import-untyped]
from sqlalchemy import select

from starter.http import create_app
from store.models import Cart, Customer, Event
from testkit.data import TEE, email_for
from testkit.live_api import serving
from testkit.stack import WRITE_KEY, Stack
from testkit.waiting import eventually_passes
from workflows.cart_recovery import CartRecovery


async def _deliver(client: Any, cid: str) -> None:
    """What a shop's backend does: identify, a page view, an anonymous visitor's event, a
    checkout; then the SDK's own flush (blocking: in a thread, the loop serves)."""
    client.identify(cid, {"email": email_for(cid), "firstName": "Ada", "plan": "gold"})
    client.page(cid, name="Home")
    client.track(anonymous_id=f"anon-{cid}", event="Product Viewed", properties=TEE)
    client.track(
        cid,
        "Checkout Started",
        {"products": [TEE], "currency": "EUR", "checkout_url": f"https://shop.test/co/{cid}"},
    )
    await asyncio.to_thread(client.flush)
    await asyncio.to_thread(client.join)


async def _kept(stack: Stack, cid: str) -> None:
    """The identify and the cart are kept; cart recovery runs for the customer."""
    async with stack.sessions() as s:
        customer = await s.get(Customer, cid)
        cart = await s.get(Cart, cid)
        names = list((await s.scalars(select(Event.name).where(Event.customer_id == cid))).all())
    assert customer is not None
    assert (customer.email, customer.first_name) == (email_for(cid), "Ada")
    assert customer.attributes["plan"] == "gold"
    assert names == ["Identify", "Cart Updated"]  # the page and the anonymous call: ignored
    assert cart is not None and "TEE-1" in str(cart.lines)
    handle = stack.client.get_workflow_handle(f"cart-recovery:{cid}")
    state = await eventually_passes(lambda: handle.query(CartRecovery.state))
    assert state.customer_id == cid
    await handle.terminate("test done")


async def test_segment_sdk_with_gzip_delivers_identify_and_track(stack):
    cid = stack.new_customer_id()
    errors: list[Exception] = []
    async with serving(create_app(stack.settings, journeys=stack.journeys)) as url:
        client = SegmentClient(
            write_key=WRITE_KEY,
            host=url,
            gzip=True,
            max_retries=1,
            on_error=lambda error, batch: errors.append(error),
        )
        await _deliver(client, cid)
    assert errors == []
    await _kept(stack, cid)


async def test_rudderstack_sdk_delivers_identify_with_traits_in_context_and_track(stack):
    cid = stack.new_customer_id()
    errors: list[Exception] = []
    async with serving(create_app(stack.settings, journeys=stack.journeys)) as url:
        client = RudderClient(  # gzip is its default
            write_key=WRITE_KEY,
            host=url,
            max_retries=1,
            on_error=lambda error, batch: errors.append(error),
        )
        await _deliver(client, cid)
    assert errors == []
    await _kept(stack, cid)


async def test_an_sdk_with_a_wrong_write_key_is_refused_and_nothing_is_kept(stack):
    cid = stack.new_customer_id()
    errors: list[Exception] = []
    async with serving(create_app(stack.settings, journeys=stack.journeys)) as url:
        client = SegmentClient(
            write_key="not-the-key",
            host=url,
            gzip=True,
            max_retries=0,
            on_error=lambda error, batch: errors.append(error),
        )
        client.identify(cid, {"email": email_for(cid)})
        await asyncio.to_thread(client.flush)
        await asyncio.to_thread(client.join)
    assert [getattr(e, "status", None) for e in errors] == [401]
    async with stack.sessions() as s:
        assert await s.get(Customer, cid) is None
