"""The event log: recording an event once per message id, and what a customer viewed or did with a
run's emails.

The caller owns the transaction (``async with sessions.begin() as s``); see ``store.repo``
for how concurrent writers are kept apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import insert_for
from store.models import Event, utcnow


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
        insert_for(session)(Event)
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
