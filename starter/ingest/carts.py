"""The cart: kept whole in the store; a change starts cart recovery or restarts its wait,
an emptied cart ends it."""

from __future__ import annotations

from typing import Any

from core.contracts import CartChange, JourneyInput
from core.ids import workflow_id
from starter.ingest.events import CartProduct, CartUpdated, Event
from starter.ingest.service import Call, EventResult, done, signalled
from store import repo
from store.models import Cart


async def cart_updated(call: Call, e: CartUpdated) -> EventResult:
    """The whole cart after a change."""
    lines = [line.line() for line in e.lines]
    checkout_url = str(e.checkout_url) if e.checkout_url else None
    return await _cart_is(call, e, lines, currency=e.currency, checkout_url=checkout_url)


async def product_added(call: Call, e: CartProduct) -> EventResult:
    """One product more: its quantity adds to what the cart holds of it."""
    cart = await repo.get_cart(call.s, customer_id=e.customer_id)
    current = _active_lines(cart)
    line = e.line()
    held = next((item for item in current if item.get("sku") == e.sku), None)
    if held is not None:
        line["quantity"] += int(held.get("quantity", 1))
    return await _products_changed(call, e, [*_without(current, e.sku), line], cart)


async def product_removed(call: Call, e: CartProduct) -> EventResult:
    """The product leaves the cart, whatever its quantity was."""
    cart = await repo.get_cart(call.s, customer_id=e.customer_id)
    return await _products_changed(call, e, _without(_active_lines(cart), e.sku), cart)


def _active_lines(cart: Cart | None) -> list[dict[str, Any]]:
    return list(cart.lines.get("items", [])) if cart and cart.status == "active" else []


def _without(lines: list[dict[str, Any]], sku: str) -> list[dict[str, Any]]:
    return [item for item in lines if item.get("sku") != sku]


async def _products_changed(
    call: Call, e: CartProduct, lines: list[dict[str, Any]], cart: Cart | None
) -> EventResult:
    currency = cart.currency if cart else "EUR"
    checkout_url = cart.checkout_url if cart else None
    return await _cart_is(call, e, lines, currency=currency, checkout_url=checkout_url)


async def _cart_is(
    call: Call,
    e: Event,
    lines: list[dict[str, Any]],
    *,
    currency: str,
    checkout_url: str | None,
) -> EventResult:
    """Keep the cart; start cart recovery (or restart its wait), or end it when emptied."""
    await repo.upsert_products(call.s, lines=lines)
    await repo.set_cart(
        call.s,
        customer_id=e.customer_id,
        lines=lines,
        currency=currency,
        checkout_url=checkout_url,
        at=e.occurred_at,
    )
    if not lines:
        wf_id = workflow_id("cart_recovery", e.customer_id)
        told = await call.runs.signal(wf_id, "cart_updated", CartChange(empty=True))
        return done(e, signalled(told))
    inp = JourneyInput(customer_id=e.customer_id, config=call.config("cart_recovery"))
    await call.runs.start(inp, signal=("cart_updated", CartChange()))
    return done(e, "started_or_signalled")
