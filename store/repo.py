"""Queries and writes, as keyword-only functions over an AsyncSession.

The caller owns the transaction (``async with sessions.begin() as s``), so a handler that
records an event, a cart and an order commits all of it or nothing.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import (
    Cart,
    Coupon,
    Customer,
    Event,
    JourneyDecision,
    JourneyPause,
    Order,
    Product,
    SendLog,
    Suppression,
    utcnow,
)


async def upsert_customer(
    session: AsyncSession,
    *,
    customer_id: str,
    email: str,
    first_name: str | None = None,
    last_name: str | None = None,
    timezone: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> Customer:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        customer = Customer(
            id=customer_id,
            email=email,
            first_name=first_name,
            last_name=last_name,
            timezone=timezone or "UTC",
            subscribed=True,
            attributes=attributes or {},
        )
        session.add(customer)
    else:
        customer.email = email
        if first_name is not None:
            customer.first_name = first_name
        if last_name is not None:
            customer.last_name = last_name
        if timezone is not None:
            customer.timezone = timezone
        if attributes:
            customer.attributes = {**customer.attributes, **attributes}
    if attributes and attributes.get("birthday"):
        customer.birthday_md = birthday_md(str(attributes["birthday"]))
    await session.flush()
    return customer


def birthday_md(text: str) -> str | None:
    """ "1990-05-17", "05-17" or "--05-17" -> "05-17"; None when it is no date."""
    parts = text.strip().lstrip("-").split("-")
    try:
        month, day = int(parts[-2]), int(parts[-1])
        date(2000, month, day)  # a leap year: 02-29 is a birthday too
    except (ValueError, IndexError):
        return None
    return f"{month:02d}-{day:02d}"


async def get_customer(session: AsyncSession, *, customer_id: str) -> Customer | None:
    return await session.get(Customer, customer_id)


async def existing_customer_ids(session: AsyncSession, *, customer_ids: set[str]) -> set[str]:
    if not customer_ids:
        return set()
    rows = await session.scalars(select(Customer.id).where(Customer.id.in_(customer_ids)))
    return set(rows)


async def record_event(
    session: AsyncSession,
    *,
    message_id: str,
    customer_id: str,
    name: str,
    properties: dict[str, Any],
    occurred_at: datetime,
) -> bool:
    """Insert the event; False if an event with this message id was recorded before."""
    if await session.scalar(select(Event.id).where(Event.message_id == message_id)) is not None:
        return False
    try:
        async with session.begin_nested():
            session.add(
                Event(
                    message_id=message_id,
                    customer_id=customer_id,
                    name=name,
                    properties=properties,
                    occurred_at=occurred_at,
                )
            )
    except IntegrityError:  # a concurrent delivery of the same message won the race
        return False
    return True


async def set_cart(
    session: AsyncSession,
    *,
    customer_id: str,
    lines: list[dict[str, Any]],
    currency: str,
    checkout_url: str | None,
    at: datetime,
) -> Cart:
    cart = await session.get(Cart, customer_id)
    status = "active" if lines else "emptied"
    if cart is None:
        cart = Cart(customer_id=customer_id)
        session.add(cart)
    cart.lines = {"items": lines}
    cart.currency = currency
    cart.checkout_url = checkout_url
    cart.status = status
    cart.updated_at = at
    await session.flush()
    return cart


async def get_cart(session: AsyncSession, *, customer_id: str) -> Cart | None:
    return await session.get(Cart, customer_id)


async def record_order(
    session: AsyncSession,
    *,
    order_id: str,
    customer_id: str,
    total: Decimal,
    currency: str,
    lines: list[dict[str, Any]],
    placed_at: datetime,
) -> bool:
    """Insert the order and close the customer's cart; False if the order was known."""
    if await session.get(Order, order_id) is not None:
        return False
    session.add(
        Order(
            id=order_id,
            customer_id=customer_id,
            total=total,
            currency=currency,
            lines={"items": lines},
            placed_at=placed_at,
        )
    )
    cart = await session.get(Cart, customer_id)
    if cart is not None and cart.updated_at <= placed_at:
        cart.status = "ordered"
    customer = await session.get(Customer, customer_id)
    if customer is not None:
        customer.order_count += 1
        if customer.last_order_at is None or placed_at > customer.last_order_at:
            customer.last_order_at = placed_at
    await session.flush()
    return True


async def has_ordered_since(session: AsyncSession, *, customer_id: str, since: datetime) -> bool:
    found = await session.scalar(
        select(Order.id).where(Order.customer_id == customer_id, Order.placed_at >= since).limit(1)
    )
    return found is not None


async def count_sent_since(
    session: AsyncSession, *, customer_id: str, since: datetime, other_than_run_chain: str
) -> int:
    """Emails sent (or going out right now) to the customer since ``since`` by runs other
    than the given one. An email whose SMTP send is in flight counts: it is going out."""
    return int(
        await session.scalar(
            select(func.count(SendLog.id)).where(
                SendLog.customer_id == customer_id,
                SendLog.status.in_(("sent", "sending")),
                SendLog.decided_at >= since,
                SendLog.run_chain_id != other_than_run_chain,
            )
        )
        or 0
    )


async def get_suppression(session: AsyncSession, *, email: str) -> Suppression | None:
    return await session.get(Suppression, email.lower())


async def suppress(
    session: AsyncSession,
    *,
    email: str,
    customer_id: str | None,
    reason: str,
    detail: str | None = None,
) -> None:
    """Suppress the address; the first reason recorded stays."""
    if await session.get(Suppression, email.lower()) is None:
        session.add(
            Suppression(email=email.lower(), customer_id=customer_id, reason=reason, detail=detail)
        )
        await session.flush()


async def lift_suppression(session: AsyncSession, *, email: str, reasons: tuple[str, ...]) -> bool:
    """Remove the address's suppression if it is for one of ``reasons``."""
    found = await session.get(Suppression, email.lower())
    if found is None or found.reason not in reasons:
        return False
    await session.delete(found)
    await session.flush()
    return True


async def get_send(session: AsyncSession, *, key: str) -> SendLog | None:
    return await session.scalar(select(SendLog).where(SendLog.idempotency_key == key))


async def delete_send(session: AsyncSession, *, key: str) -> None:
    await session.execute(delete(SendLog).where(SendLog.idempotency_key == key))


async def sends_for_customer(session: AsyncSession, *, customer_id: str) -> list[SendLog]:
    rows = await session.scalars(
        select(SendLog).where(SendLog.customer_id == customer_id).order_by(SendLog.id)
    )
    return list(rows)


async def get_or_create_coupon(
    session: AsyncSession,
    *,
    source_key: str,
    code: str,
    customer_id: str,
    journey: str,
    percent_off: int,
    expires_at: datetime,
) -> Coupon:
    coupon = await session.scalar(select(Coupon).where(Coupon.source_key == source_key))
    if coupon is None:
        coupon = Coupon(
            code=code,
            source_key=source_key,
            customer_id=customer_id,
            journey=journey,
            percent_off=percent_off,
            expires_at=expires_at,
            created_at=utcnow(),
        )
        session.add(coupon)
        await session.flush()
    return coupon


async def upsert_products(
    session: AsyncSession, *, lines: list[dict[str, Any]], ordered: bool = False
) -> None:
    """Keep the catalogue of products seen in events; count what is ordered.

    One INSERT ... ON CONFLICT DO UPDATE per product, so two events about a new product at
    the same moment cannot collide, and concurrent orders never lose a count."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for line in lines:
        sku = line.get("sku")
        if not sku or not line.get("name"):
            continue
        values: dict[str, Any] = {"sku": sku, "name": line["name"]}
        for attr in ("category", "url", "image_url"):
            if line.get(attr):
                values[attr] = line[attr]
        if line.get("price") is not None:
            values["price"] = Decimal(str(line["price"]))
        count = int(line.get("quantity", 1)) if ordered else 0
        stmt = insert(Product).values(
            **values, times_ordered=count, first_seen_at=utcnow(), updated_at=utcnow()
        )
        changed = {k: stmt.excluded[k] for k in values if k != "sku"}
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[Product.sku],
                set_={
                    **changed,
                    "times_ordered": Product.times_ordered + count,
                    "updated_at": utcnow(),
                },
            )
        )


async def get_product(session: AsyncSession, *, sku: str) -> Product | None:
    return await session.get(Product, sku)


async def popular_in_category(
    session: AsyncSession, *, category: str | None, exclude: set[str], limit: int = 3
) -> list[Product]:
    """Cross-sell and accessory picks: the most ordered products of the category."""
    if not category:
        return []
    query = (
        select(Product)
        .where(Product.category == category, Product.sku.not_in(exclude or {""}))
        .order_by(Product.times_ordered.desc(), Product.sku)
        .limit(limit)
    )
    return list(await session.scalars(query))


async def picks(session: AsyncSession, *, kind: str, limit: int = 4) -> list[Product]:
    """Shop-wide picks: "new_arrivals" (first seen last) or "best_sellers" (most ordered)."""
    order = (
        (Product.first_seen_at.desc(),)
        if kind == "new_arrivals"
        else (Product.times_ordered.desc(), Product.sku)
    )
    return list(await session.scalars(select(Product).order_by(*order).limit(limit)))


async def orders_since(session: AsyncSession, *, customer_id: str, since: datetime) -> list[Order]:
    rows = await session.scalars(
        select(Order)
        .where(Order.customer_id == customer_id, Order.placed_at >= since)
        .order_by(Order.placed_at)
    )
    return list(rows)


async def get_order(session: AsyncSession, *, customer_id: str, order_id: str) -> Order | None:
    """The customer's order, or their latest with ``order_id="latest"``."""
    query = select(Order).where(Order.customer_id == customer_id)
    if order_id == "latest":
        query = query.order_by(Order.placed_at.desc()).limit(1)
    else:
        query = query.where(Order.id == order_id)
    return await session.scalar(query)


async def count_orders(session: AsyncSession, *, customer_id: str) -> int:
    return int(
        await session.scalar(select(func.count(Order.id)).where(Order.customer_id == customer_id))
        or 0
    )


async def count_views(
    session: AsyncSession,
    *,
    customer_id: str,
    sku: str | None = None,
    category: str | None = None,
    since: datetime | None = None,
) -> int:
    """How often the customer viewed this product (or any product of this category)."""
    query = select(func.count(Event.id)).where(
        Event.customer_id == customer_id, Event.name == "Product Viewed"
    )
    if since is not None:
        query = query.where(Event.received_at >= since)
    if sku is not None:
        query = query.where(Event.properties["sku"].as_string() == sku)
    if category is not None:
        query = query.where(Event.properties["category"].as_string() == category)
    return int(await session.scalar(query) or 0)


async def engagement_of_run(
    session: AsyncSession, *, customer_id: str, send_key_prefix: str
) -> set[str]:
    """Which of "Email Opened" / "Email Link Clicked" happened on this run's emails."""
    rows = await session.execute(
        select(Event.name, Event.properties).where(
            Event.customer_id == customer_id,
            Event.name.in_(("Email Opened", "Email Link Clicked")),
        )
    )
    return {
        name
        for name, props in rows
        if str((props or {}).get("send_key") or "").startswith(send_key_prefix)
    }


async def record_decision(
    session: AsyncSession,
    *,
    customer_id: str,
    journey: str,
    workflow_id: str,
    run_chain_id: str,
    name: str,
    value: str,
    reason: str | None,
    decided_at: datetime,
) -> None:
    """Once per run and name: a retried activity records nothing twice."""
    found = await session.scalar(
        select(JourneyDecision.id).where(
            JourneyDecision.workflow_id == workflow_id,
            JourneyDecision.run_chain_id == run_chain_id,
            JourneyDecision.name == name,
        )
    )
    if found is None:
        session.add(
            JourneyDecision(
                customer_id=customer_id,
                journey=journey,
                workflow_id=workflow_id,
                run_chain_id=run_chain_id,
                name=name,
                value=value,
                reason=reason,
                decided_at=decided_at,
            )
        )
        await session.flush()


async def journey_pause(session: AsyncSession, *, journey: str) -> JourneyPause | None:
    return await session.get(JourneyPause, journey)


async def set_journey_pause(
    session: AsyncSession, *, journey: str, paused: bool, reason: str | None = None
) -> bool:
    """Pause or resume a whole journey; False when it already was so."""
    found = await session.get(JourneyPause, journey)
    if paused and found is None:
        session.add(JourneyPause(journey=journey, reason=reason))
    elif not paused and found is not None:
        await session.delete(found)
    else:
        return False
    await session.flush()
    return True
