"""Customers, their carts and consent (suppressions), and the send log and coupons as the
send activities read them: keyword-only functions over an AsyncSession. Products, orders,
the event log and journey decisions have their own modules beside this one.

The caller owns the transaction (``async with sessions.begin() as s``), so a handler that
records an event, a cart and an order commits all of it or nothing.

Concurrency (PostgreSQL, READ COMMITTED): first inserts are ``INSERT ... ON CONFLICT``, so
two first events of a customer never collide; whoever reads a customer's row to change it
(carts, counters, opt-outs in ``attributes``) locks it first with ``lock_customer``, so
changes of one customer are made one after the other and none is lost.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.rules import SUPPRESSION_PRECEDENCE, birthday_md
from store.db import insert_for
from store.models import Cart, Coupon, Customer, SendLog, Suppression, SuppressionReason, utcnow


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
        insert_for(session)(Customer)
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


async def get_customer(session: AsyncSession, *, customer_id: str) -> Customer | None:
    return await session.get(Customer, customer_id)


# The send path's statements, built once (building one costs more than running it on
# SQLite: BENCHMARKS.md, 4-send-step); the values are bound at each call.
_LOCK_CUSTOMER = (
    select(Customer)
    .where(Customer.id == bindparam("customer_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
_SEND_BY_KEY = select(SendLog).where(SendLog.idempotency_key == bindparam("key"))


async def lock_customer(session: AsyncSession, *, customer_id: str) -> Customer | None:
    """The customer's row, locked until the transaction ends (SELECT ... FOR UPDATE on
    PostgreSQL; SQLite's write lock is the whole database's already)."""
    return await session.scalar(_LOCK_CUSTOMER, {"customer_id": customer_id})


async def lock_customers(session: AsyncSession, *, customer_ids: set[str]) -> None:
    """Lock these customers' rows until the transaction ends, in id order (two
    transactions locking overlapping sets wait for each other instead of deadlocking);
    nothing on SQLite, whose write lock is the whole database's."""
    if customer_ids and session.get_bind().dialect.name != "sqlite":
        await session.execute(
            select(Customer.id)
            .where(Customer.id.in_(customer_ids))
            .order_by(Customer.id)
            .with_for_update()
        )


async def existing_customer_ids(session: AsyncSession, *, customer_ids: set[str]) -> set[str]:
    if not customer_ids:
        return set()
    rows = await session.scalars(select(Customer.id).where(Customer.id.in_(customer_ids)))
    return set(rows)


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
    stmt = insert_for(session)(Cart).values(customer_id=customer_id, **values)
    upsert = stmt.on_conflict_do_update(
        index_elements=[Cart.customer_id], set_={k: stmt.excluded[k] for k in values}
    )
    kept = await session.scalars(
        upsert.returning(Cart), execution_options={"populate_existing": True}
    )
    cart: Cart = kept.one()
    return cart


async def get_cart(session: AsyncSession, *, customer_id: str) -> Cart | None:
    return await session.get(Cart, customer_id)


async def get_suppression(session: AsyncSession, *, email: str) -> Suppression | None:
    """The address's suppression (its strongest reason), or None."""
    return await session.get(Suppression, email.lower())


async def suppression_reasons(session: AsyncSession, *, email: str) -> list[SuppressionReason]:
    """Every reason the address is suppressed for, strongest first."""
    rows = list(
        await session.scalars(
            select(SuppressionReason).where(SuppressionReason.email == email.lower())
        )
    )
    order = {r: i for i, r in enumerate(SUPPRESSION_PRECEDENCE)}
    return sorted(rows, key=lambda r: (order.get(r.reason, len(order)), r.reason))


async def suppress(
    session: AsyncSession,
    *,
    email: str,
    customer_id: str | None,
    reason: str,
    detail: str | None = None,
    source: str | None = None,
) -> None:
    """Add ``reason`` to the address's suppression (a reason already there keeps its first
    source and time); the address shows its strongest reason."""
    address = email.lower()
    await session.execute(
        insert_for(session)(SuppressionReason)
        .values(
            email=address,
            reason=reason,
            source=source,
            detail=detail,
            customer_id=customer_id,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[SuppressionReason.email, SuppressionReason.reason])
    )
    await _show_strongest(session, address, customer_id)


async def lift_suppression(session: AsyncSession, *, email: str, reasons: tuple[str, ...]) -> bool:
    """Lift ``reasons`` from the address; any other reason stays in force. True when one of
    them was there."""
    address = email.lower()
    lifted = await session.execute(
        delete(SuppressionReason).where(
            SuppressionReason.email == address, SuppressionReason.reason.in_(reasons)
        )
    )
    await _show_strongest(session, address, None)
    return bool(getattr(lifted, "rowcount", 0))


async def _show_strongest(session: AsyncSession, address: str, customer_id: str | None) -> None:
    """The ``suppressions`` row follows the reasons: their strongest, or no row at all."""
    left = await suppression_reasons(session, email=address)
    if not left:
        await session.execute(delete(Suppression).where(Suppression.email == address))
        return
    top = left[0]
    values = {"reason": top.reason, "detail": top.detail}
    await session.execute(
        insert_for(session)(Suppression)
        .values(
            email=address,
            customer_id=customer_id or top.customer_id,
            created_at=top.created_at,
            **values,
        )
        .on_conflict_do_update(index_elements=[Suppression.email], set_=values)
    )
    await session.flush()


async def get_send(session: AsyncSession, *, key: str) -> SendLog | None:
    return await session.scalar(_SEND_BY_KEY, {"key": key})


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
