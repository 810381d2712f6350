"""Consent records (docs/decisions/0010-double-opt-in.md): one per address, with where and
when the consent was given, the text agreed to, and the confirmation of a double opt-in
(when, from which IP address and user agent). The caller owns the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import ConsentRecord

__all__ = [
    "ConsentRecord",
    "confirm_consent",
    "consent_of_customer",
    "get_consent",
    "record_consent",
]


async def get_consent(session: AsyncSession, *, email: str) -> ConsentRecord | None:
    return await session.get(ConsentRecord, email.lower())


async def consent_of_customer(session: AsyncSession, *, customer_id: str) -> ConsentRecord | None:
    """The record of the customer's address (their latest, if the address changed)."""
    return await session.scalar(
        select(ConsentRecord)
        .where(ConsentRecord.customer_id == customer_id)
        .order_by(ConsentRecord.given_at.desc())
        .limit(1)
    )


async def record_consent(
    session: AsyncSession,
    *,
    email: str,
    customer_id: str,
    source: str,
    text: str,
    given_at: datetime,
    double_opt_in: bool,
) -> ConsentRecord:
    """Record a consent given; a confirmed record stays as it is (the first confirmation is
    the proof), a pending one is replaced by the newer consent. Returns the row."""
    row = await session.get(ConsentRecord, email.lower(), with_for_update=True)
    if row is None:
        row = ConsentRecord(email=email.lower())
        session.add(row)
    elif row.confirmed_at is not None:
        return row
    row.customer_id = customer_id
    row.source = source[:64]
    row.text = text
    row.given_at = given_at
    row.double_opt_in = double_opt_in
    await session.flush()
    return row


async def confirm_consent(
    session: AsyncSession,
    *,
    email: str,
    at: datetime,
    ip: str | None,
    user_agent: str | None,
) -> ConsentRecord | None:
    """The confirmation link's button was pressed: when, from where. The first press counts
    (a second one changes nothing). None: no consent was asked of the address."""
    row = await session.get(ConsentRecord, email.lower(), with_for_update=True)
    if row is None or row.confirmed_at is not None:
        return row
    row.confirmed_at = at
    row.confirm_ip = (ip or "")[:45] or None
    row.confirm_user_agent = user_agent
    await session.flush()
    return row
