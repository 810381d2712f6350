"""Events of one customer arriving at the same moment, on PostgreSQL (READ COMMITTED, real
concurrent transactions): nothing is lost, nothing collides."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from store.models import Cart, Customer, Event, Suppression
from testkit.data import HAT, MUG, TEE, add_customer, email_for

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

PRODUCTS = [
    {"sku": f"P-{n}", "name": f"Product {n}", "price": f"{n + 1}.00", "category": "race"}
    for n in range(8)
]


async def _cart_skus(stack, customer_id: str) -> list[str]:
    async with stack.sessions() as s:
        cart = await s.get(Cart, customer_id)
    assert cart is not None
    return sorted(line["sku"] for line in cart.lines["items"])


async def _customer(stack, customer_id: str) -> Customer:
    async with stack.sessions() as s:
        customer: Customer | None = await s.get(Customer, customer_id)
    assert customer is not None
    return customer


async def test_two_products_added_at_once_both_join_the_cart(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await stack.journeys.cart_updated({"customer_id": cid, "lines": [TEE]})
    await asyncio.gather(
        stack.journeys.product_added({"customer_id": cid, **MUG}),
        stack.journeys.product_added({"customer_id": cid, **HAT}),
    )
    assert await _cart_skus(stack, cid) == ["HAT-3", "MUG-7", "TEE-1"]


async def test_three_soft_bounces_at_once_count_three_and_suppress(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await asyncio.gather(
        *(
            stack.journeys.email_bounced({"customer_id": cid, "bounce_type": "soft"})
            for _ in range(3)
        )
    )
    assert (await _customer(stack, cid)).attributes["soft_bounces"] == 3
    async with stack.sessions() as s:
        suppressed = await s.get(Suppression, email_for(cid))
    assert suppressed is not None and suppressed.reason == "soft_bounce_limit"


async def test_a_journey_unsubscribe_racing_an_open_is_kept(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    for n in range(5):
        # A soft bounce first: the open then rewrites the attributes (it ends the bounces).
        await stack.journeys.email_bounced({"customer_id": cid, "bounce_type": "soft"})
        await asyncio.gather(
            stack.journeys.unsubscribe({"customer_id": cid, "journey": f"journey_{n}"}),
            stack.journeys.engaged(
                {
                    "customer_id": cid,
                    "kind": "opened",
                    "send_key": f"welcome-series:{cid}:run:step_{n}",
                }
            ),
        )
    customer = await _customer(stack, cid)
    assert customer.attributes["unsubscribed_journeys"] == [f"journey_{n}" for n in range(5)]
    assert customer.attributes["soft_bounces"] == 0


async def test_first_events_of_a_new_customer_at_once_do_not_collide(stack):
    cid = stack.new_customer_id()
    traits = {"email": email_for(cid), "first_name": "Ada"}
    results = await asyncio.gather(
        stack.journeys.identify(customer_id=cid, traits={**traits, "plan": "gold"}),
        stack.journeys.identify(customer_id=cid, traits={**traits, "tier": 2}),
    )
    assert all(r.recorded for r in results)
    first_carts = await asyncio.gather(
        stack.journeys.cart_updated({"customer_id": cid, "lines": [TEE]}),
        stack.journeys.product_added({"customer_id": cid, **MUG}),
        stack.journeys.product_added({"customer_id": cid, **HAT}),
    )
    assert all(r.recorded for r in first_carts)
    assert {"plan", "tier"} <= set((await _customer(stack, cid)).attributes)
    assert {"MUG-7", "HAT-3"} <= set(await _cart_skus(stack, cid))


def _events_of(cid: str) -> list[tuple[str, dict[str, Any]]]:
    """Twenty events of one customer: eight products, five loads of one open pixel, an
    opt-out of one journey, three views of one product, two identifies, one other event."""
    open_key = f"welcome-series:{cid}:run:welcome"
    events: list[tuple[str, dict[str, Any]]] = [
        ("product_added", {"customer_id": cid, **p}) for p in PRODUCTS
    ]
    events += [("engaged", {"customer_id": cid, "kind": "opened", "send_key": open_key})] * 5
    events += [("unsubscribe", {"customer_id": cid, "journey": "browse_follow_up"})]
    events += [("product_viewed", {"customer_id": cid, "product": PRODUCTS[0]})] * 3
    events += [
        ("identify", {"customer_id": cid, "traits": {"email": email_for(cid), name: n}})
        for n, name in enumerate(("plan", "tier"))
    ]
    events += [("other_event", {"customer_id": cid, "name": "Wishlist Shared"})]
    assert len(events) == 20
    return events


async def test_twenty_events_at_once_for_each_of_many_customers_end_in_the_right_state(stack):
    customers = [stack.new_customer_id() for _ in range(12)]
    for cid in customers:
        await add_customer(stack, cid)

    async def send(method: str, event: dict[str, Any]) -> Any:
        if method == "identify":
            return await stack.journeys.identify(**event)
        return await getattr(stack.journeys, method)(event)

    calls = [send(m, e) for cid in customers for m, e in _events_of(cid)]
    results = await asyncio.gather(*calls)
    assert len(results) == 240

    async with stack.sessions() as s:
        rows = (await s.scalars(select(Event).where(Event.customer_id.in_(customers)))).all()
    for cid in customers:
        mine = [e for e in rows if e.customer_id == cid]
        assert Counter(e.name for e in mine) == {
            "Product Added": 8,
            "Email Opened": 1,
            "Unsubscribed": 1,
            "Product Viewed": 3,
            "Identify": 2,
            "Wishlist Shared": 1,
        }, cid
        (opened,) = [e for e in mine if e.name == "Email Opened"]
        assert opened.repeats == 4
        assert await _cart_skus(stack, cid) == sorted(p["sku"] for p in PRODUCTS)
        customer = await _customer(stack, cid)
        assert customer.attributes["unsubscribed_journeys"] == ["browse_follow_up"]
        assert (customer.attributes["plan"], customer.attributes["tier"]) == (0, 1)
    async with stack.sessions() as s:
        carts = (await s.scalars(select(Cart).where(Cart.customer_id.in_(customers)))).all()
    assert all(c.status == "active" for c in carts) and len(carts) == 12
