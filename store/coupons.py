"""Coupon redemptions: the codes an order came with ("Order Completed"'s ``coupon``, Segment's
e-commerce spec), each recorded once per order with what it was to us.

A code is ``redeemed`` when it is the customer's own coupon and the order was placed (its
own time) by the coupon's ``expires_at``; ``expired`` when placed after; ``foreign`` when it
is another customer's; ``reused`` when it was redeemed on another order before; ``unknown``
when no journey gave it (the shop's own codes). Only ``redeemed`` counts as "used the
coupon" (the welcome series' day-7 branch, the report).

The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import insert_for
from store.models import Coupon, CouponRedemption

REDEEMED = "redeemed"


def normalize(code: str) -> str:
    """Codes are kept as the journeys write them: trimmed, upper case."""
    return code.strip().upper()


async def redeem(
    s: AsyncSession,
    *,
    order_id: str,
    customer_id: str,
    codes: Iterable[str],
    discount: Decimal | None,
    placed_at: datetime,
) -> list[CouponRedemption]:
    """Record the order's codes (each once: the same order again changes nothing) and return
    what each was. ``discount`` is the order's discount as the shop reports it."""
    out: list[CouponRedemption] = []
    for code in dict.fromkeys(normalize(c) for c in codes if c.strip()):
        coupon = await s.get(Coupon, code)
        status = await _status_of(
            s, coupon, order_id=order_id, customer_id=customer_id, at=placed_at
        )
        await s.execute(
            insert_for(s)(CouponRedemption)
            .values(
                code=code,
                order_id=order_id,
                customer_id=customer_id,
                owner_id=coupon.customer_id if coupon is not None else None,
                journey=coupon.journey if coupon is not None else None,
                status=status,
                discount=discount,
                redeemed_at=placed_at,
            )
            .on_conflict_do_nothing(
                index_elements=[CouponRedemption.order_id, CouponRedemption.code]
            )
        )
        row = await s.scalar(
            select(CouponRedemption).where(
                CouponRedemption.order_id == order_id, CouponRedemption.code == code
            )
        )
        if row is not None:
            out.append(row)
    return out


async def _status_of(
    s: AsyncSession, coupon: Coupon | None, *, order_id: str, customer_id: str, at: datetime
) -> str:
    if coupon is None:
        return "unknown"
    if coupon.customer_id != customer_id:
        return "foreign"
    if at > coupon.expires_at:
        return "expired"
    before = await s.scalar(
        select(CouponRedemption.order_id).where(
            CouponRedemption.code == coupon.code,
            CouponRedemption.status == REDEEMED,
            CouponRedemption.order_id != order_id,
        )
    )
    return "reused" if before is not None else REDEEMED


async def redeemed_from_run(s: AsyncSession, *, customer_id: str, send_key_prefix: str) -> bool:
    """Did the customer redeem a coupon one of this run's emails gave (its send key)?"""
    found = await s.scalar(
        select(CouponRedemption.id)
        .join(Coupon, Coupon.code == CouponRedemption.code)
        .where(
            CouponRedemption.customer_id == customer_id,
            CouponRedemption.status == REDEEMED,
            Coupon.source_key.startswith(send_key_prefix, autoescape=True),
        )
        .limit(1)
    )
    return found is not None


async def redemptions_of(s: AsyncSession, *, customer_id: str) -> list[CouponRedemption]:
    """A customer's codes, oldest first (explain, tests)."""
    rows = await s.scalars(
        select(CouponRedemption)
        .where(CouponRedemption.customer_id == customer_id)
        .order_by(CouponRedemption.redeemed_at, CouponRedemption.id)
    )
    return list(rows)
