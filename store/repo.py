"""Queries and writes, as keyword-only functions over an AsyncSession.

The caller owns the transaction (``async with sessions.begin() as s``), so a handler that
records an event, a cart and an order commits all of it or nothing.

Concurrency (PostgreSQL, READ COMMITTED): first inserts are ``INSERT ... ON CONFLICT``, so
two first events of a customer never collide; whoever reads a customer's row to change it
(carts, counters, opt-outs in ``attributes``) locks it first with ``lock_customer``, so
changes of one customer are made one after the other and none is lost.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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
    """Create the customer or update what is given; returns the row, locked."""
    created = await session.execute(
        _insert(session)(Customer)
        .values(
            id=customer_id,
            email=email,
            first_name=first_name,
            last_name=last_name,
            timezone=timezone or "UTC",
            subscribed=True,
            attributes=attributes or {},
        )
        .on_conflict_do_nothing(index_elements=[Customer.id])
        .returning(Customer.id)
    )
    is_new = created.scalar_one_or_none() is not None
    customer = await lock_customer(session, customer_id=customer_id)
    assert customer is not None  # inserted above or there before
    if not is_new:
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


async def lock_customer(session: AsyncSession, *, customer_id: str) -> Customer | None:
    """The customer's row, locked until the transaction ends (SELECT ... FOR UPDATE on
    PostgreSQL; SQLite's write lock is the whole database's already)."""
    return await session.scalar(
        select(Customer)
        .where(Customer.id == customer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _insert(session: AsyncSession) -> Any:
    """INSERT with ON CONFLICT, as the session's database writes it."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


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
    """Insert the event; False if an event with this message id was recorded before (then
    this one only counts as a repeat of it). A concurrent delivery of the same message waits
    for the first one's transaction and then counts as its repeat."""
    inserted = await session.execute(
        _insert(session)(Event)
        .values(
            message_id=message_id,
            customer_id=customer_id,
            name=name,
            properties=properties,
            occurred_at=occurred_at,
            received_at=utcnow(),
            repeats=0,
        )
        .on_conflict_do_nothing(index_elements=[Event.message_id])
        .returning(Event.id)
    )
    if inserted.scalar_one_or_none() is not None:
        return True
    await session.execute(
        update(Event)
        .where(Event.message_id == message_id)
        .values(repeats=Event.repeats + 1)
        .execution_options(synchronize_session=False)
    )
    return False


async def set_cart(
    session: AsyncSession,
    *,
    customer_id: str,
    lines: list[dict[str, Any]],
    currency: str,
    checkout_url: str | None,
    at: datetime,
    whole: bool = True,
) -> Cart:
    """Keep the customer's cart as it is now; ``at``: the event time of the change,
    ``whole``: the change gave the whole cart (not one product). One atomic upsert, so a
    first cart written twice at once does not collide."""
    values: dict[str, Any] = {
        "lines": {"items": lines},
        "currency": currency,
        "checkout_url": checkout_url,
        "status": "active" if lines else "emptied",
        "updated_at": at,
    }
    if whole:
        values["replaced_at"] = at
    stmt = _insert(session)(Cart).values(customer_id=customer_id, **values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Cart.customer_id], set_={k: stmt.excluded[k] for k in values}
        )
    )
    cart = await session.get(Cart, customer_id, populate_existing=True)
    assert cart is not None
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
    """Insert the order and close the customer's cart unless the cart changed after it;
    False if the order id was recorded before (the same order again counts once)."""
    inserted = await session.execute(
        _insert(session)(Order)
        .values(
            id=order_id,
            customer_id=customer_id,
            total=total,
            currency=currency,
            lines={"items": lines},
            placed_at=placed_at,
        )
        .on_conflict_do_nothing(index_elements=[Order.id])
        .returning(Order.id)
    )
    if inserted.scalar_one_or_none() is None:
        return False
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
    """Suppress the address; the first reason recorded stays (also when two suppress it at
    the same moment)."""
    await session.execute(
        _insert(session)(Suppression)
        .values(
            email=email.lower(),
            customer_id=customer_id,
            reason=reason,
            detail=detail,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[Suppression.email])
    )


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
    the same moment cannot collide, and concurrent orders never lose a count. Products are
    written in SKU order: two transactions lock shared rows in the same order (no deadlock)."""
    insert = _insert(session)
    for line in sorted(lines, key=lambda item: str(item.get("sku") or "")):
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
