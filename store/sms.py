"""Text messages in the store: a customer's number and SMS consent, SMS suppressions by
number, the per-channel frequency count, delivery receipts, and the short links of texts.
Keyword-only functions; the caller owns the transaction (docs/decisions/0015-sms.md)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.sms import strongest
from store.db import insert_for
from store.models import Customer, SendLog, ShortLink, SmsSuppression, utcnow
from store.sends import GOING_OUT

SHORT_TOKEN_BYTES = 6  # 8 URL-safe characters: 2^48 tokens, never guessed in practice


async def sms_suppression(session: AsyncSession, *, phone: str) -> str | None:
    """The number's strongest SMS suppression reason, or None."""
    found = await session.scalars(
        select(SmsSuppression.reason).where(SmsSuppression.phone == phone)
    )
    return strongest(found.all())


async def sms_suppressions(session: AsyncSession, *, phone: str) -> Sequence[SmsSuppression]:
    found = await session.scalars(select(SmsSuppression).where(SmsSuppression.phone == phone))
    return found.all()


async def suppress_sms(
    session: AsyncSession,
    *,
    phone: str,
    reason: str,
    source: str,
    customer_id: str | None = None,
    detail: str | None = None,
) -> None:
    """Add ``reason`` to the number's SMS suppression (one already there keeps its first
    source and time)."""
    await session.execute(
        insert_for(session)(SmsSuppression)
        .values(
            phone=phone,
            reason=reason,
            source=source,
            detail=detail,
            customer_id=customer_id,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[SmsSuppression.phone, SmsSuppression.reason])
    )


async def lift_sms(session: AsyncSession, *, phone: str, reasons: Sequence[str]) -> bool:
    """Lift ``reasons`` from the number; the others stay. True when one was there."""
    lifted = await session.execute(
        delete(SmsSuppression).where(
            SmsSuppression.phone == phone, SmsSuppression.reason.in_(list(reasons))
        )
    )
    return bool(getattr(lifted, "rowcount", 0))


def set_consent(customer: Customer, *, granted: bool, at: datetime, source: str) -> None:
    """Record SMS consent given or withdrawn: when, and how (``identify``, ``reply:START``,
    ``reply:STOP``, ...)."""
    customer.sms_consent = granted
    customer.sms_consent_at = at
    customer.sms_consent_source = source[:64]


async def customers_with_phone(session: AsyncSession, *, phone: str) -> Sequence[Customer]:
    found = await session.scalars(select(Customer).where(Customer.phone == phone))
    return found.all()


async def count_sent_since(
    session: AsyncSession,
    *,
    customer_id: str,
    since: datetime,
    other_than_run_chain: str,
    channel: str,
) -> int:
    """Like store.sends.count_sent_since, for one channel only (FrequencyCap.per_channel)."""
    return int(
        await session.scalar(
            select(func.count(SendLog.id)).where(
                SendLog.customer_id == customer_id,
                SendLog.status.in_(GOING_OUT),
                SendLog.decided_at >= since,
                SendLog.run_chain_id != other_than_run_chain,
                SendLog.channel == channel,
            )
        )
        or 0
    )


async def record_delivery(
    session: AsyncSession, *, message_id: str, status: str, error: str | None
) -> SendLog | None:
    """A status callback: the text ``message_id`` (the provider's id) was ``status``
    (delivered | undelivered | failed) with the provider's ``error`` code. None: no text of
    ours has that id."""
    row = await session.scalar(
        select(SendLog).where(SendLog.message_id == message_id, SendLog.channel == "sms")
    )
    if row is None:
        return None
    await session.execute(
        update(SendLog)
        .where(SendLog.id == row.id)
        .values(delivery_status=status, delivery_error=error, delivery_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return row


async def short_link(session: AsyncSession, *, customer_id: str, send_key: str, url: str) -> str:
    """The short token of ``url`` in the text ``send_key`` (made once per send and link)."""
    found = await session.scalar(
        select(ShortLink.token).where(ShortLink.send_key == send_key, ShortLink.url == url)
    )
    if found is not None:
        return found
    token = secrets.token_urlsafe(SHORT_TOKEN_BYTES)
    session.add(ShortLink(token=token, customer_id=customer_id, send_key=send_key, url=url))
    await session.flush()
    return token


async def follow_short_link(session: AsyncSession, *, token: str) -> ShortLink | None:
    return await session.get(ShortLink, token)


async def set_message_id(session: AsyncSession, *, key: str, message_id: str) -> None:
    """The provider's id of the text sent under ``key`` (its status callbacks name it)."""
    await session.execute(
        update(SendLog)
        .where(SendLog.idempotency_key == key)
        .values(message_id=message_id)
        .execution_options(synchronize_session=False)
    )


def note_phone(
    customer: Customer, *, phone: str | None, consent: bool | None, at: datetime
) -> None:
    """An identify's ``phone`` and ``sms_consent`` traits. Consent belongs to a number: a
    new number without consent in the same call has none (until given)."""
    if phone is not None and phone != customer.phone:
        customer.phone = phone
        if consent is None and customer.sms_consent:
            set_consent(customer, granted=False, at=at, source="identify: new number")
    if consent is not None and consent != customer.sms_consent:
        set_consent(customer, granted=consent, at=at, source="identify")
