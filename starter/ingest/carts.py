"""The cart: kept whole in the store; a change starts cart recovery or restarts its wait,
an emptied cart ends it.

Changes are applied by when they happened (docs/architecture.md decision 19): a cart event from
before the customer's last order changes nothing (the order closed that cart), nor does a
whole cart older than the cart's last change, nor a product added or removed before the
cart last came whole (that cart holds it already). Such an event is recorded, answered
``outdated`` and starts nothing. Products added or removed in any order all count.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.contracts import CartChange, JourneyInput
from core.ids import workflow_id
from starter.ingest.events import CartProduct, CartUpdated, Event
from starter.ingest.service import SIGNALLED, Call, Handled, done
from store import repo
from store.models import Cart


async def cart_updated(call: Call, e: CartUpdated) -> Handled:
    """The whole cart after a change."""
    cart = await repo.get_cart(call.s, customer_id=e.customer_id)
    if _before_last_order(call, e) or (cart is not None and e.occurred_at < cart.updated_at):
        return done(e, "outdated")
    lines = [line.line() for line in e.lines]
    checkout_url = str(e.checkout_url) if e.checkout_url else None
    return await _cart_is(
        call, e, lines, currency=e.currency, checkout_url=checkout_url, at=e.occurred_at
    )


async def product_added(call: Call, e: CartProduct) -> Handled:
    """One product more: its quantity adds to what the cart holds of it."""
    cart = await repo.get_cart(call.s, customer_id=e.customer_id)
    if _outdated_product(call, cart, e):
        return done(e, "outdated")
    current = _active_lines(cart)
    line = e.line()
    held = next((item for item in current if item.get("sku") == e.sku), None)
    if held is not None:
        line["quantity"] += int(held.get("quantity", 1))
    return await _products_changed(call, e, [*_without(current, e.sku), line], cart)


async def product_removed(call: Call, e: CartProduct) -> Handled:
    """The product leaves the cart, whatever its quantity was."""
    cart = await repo.get_cart(call.s, customer_id=e.customer_id)
    if _outdated_product(call, cart, e):
        return done(e, "outdated")
    return await _products_changed(call, e, _without(_active_lines(cart), e.sku), cart)


def _before_last_order(call: Call, e: Event) -> bool:
    last_order = call.customer.last_order_at
    return last_order is not None and e.occurred_at <= last_order


def _outdated_product(call: Call, cart: Cart | None, e: Event) -> bool:
    replaced = cart.replaced_at if cart is not None else None
    return _before_last_order(call, e) or (replaced is not None and e.occurred_at < replaced)


def _active_lines(cart: Cart | None) -> list[dict[str, Any]]:
    return list(cart.lines.get("items", [])) if cart and cart.status == "active" else []


def _without(lines: list[dict[str, Any]], sku: str) -> list[dict[str, Any]]:
    return [item for item in lines if item.get("sku") != sku]


async def _products_changed(
    call: Call, e: CartProduct, lines: list[dict[str, Any]], cart: Cart | None
) -> Handled:
    return await _cart_is(
        call,
        e,
        lines,
        currency=cart.currency if cart else "EUR",
        checkout_url=cart.checkout_url if cart else None,
        at=max(cart.updated_at, e.occurred_at) if cart else e.occurred_at,
        whole=False,
    )


async def _cart_is(
    call: Call,
    e: Event,
    lines: list[dict[str, Any]],
    *,
    currency: str,
    checkout_url: str | None,
    at: datetime,
    whole: bool = True,
) -> Handled:
    """Keep the cart; start cart recovery (or restart its wait), or end it when emptied."""
    await call.products_seen(lines)
    await repo.set_cart(
        call.s,
        customer_id=e.customer_id,
        lines=lines,
        currency=currency,
        checkout_url=checkout_url,
        at=at,
        whole=whole,
    )
    if not lines:
        wf_id = workflow_id("cart_recovery", e.customer_id)
        await call.signal(wf_id, "cart_updated", CartChange(empty=True))
        return done(e, SIGNALLED)
    inp = JourneyInput(customer_id=e.customer_id, config=call.config("cart_recovery"))
    await call.start(inp, signal=("cart_updated", CartChange()))
    return done(e, "started_or_signalled")
