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


ENGAGEMENT = ("Email Opened", "Email Link Clicked")


def counts_as_reaction(event: Event) -> bool:
    """A person's open or click, and not of a list link (unsubscribe, report, a tracked
    "keep writing" link): what "did they react" decisions read. ``None``: recorded before
    engagement was classified, counted as it always was."""
    return event.engagement_class in (None, "human") and not (event.properties or {}).get(
        "list_link"
    )


async def engagement_of_run(
    session: AsyncSession, *, customer_id: str, send_key_prefix: str
) -> set[str]:
    """Which of "Email Opened" / "Email Link Clicked" a person did on this run's emails
    (machine engagement and clicks of list links are kept, not counted: ``counts_as_reaction``)."""
    rows = await session.scalars(
        select(Event).where(Event.customer_id == customer_id, Event.name.in_(ENGAGEMENT))
    )
    return {
        e.name
        for e in rows
        if str((e.properties or {}).get("send_key") or "").startswith(send_key_prefix)
        and counts_as_reaction(e)
    }


async def engagement_of_send(
    session: AsyncSession, *, customer_id: str, send_key: str, name: str | None = None
) -> list[Event]:
    """Every open and click recorded against one email (``name``: only those), oldest
    first, with their class."""
    rows = await session.scalars(
        select(Event)
        .where(
            Event.customer_id == customer_id,
            Event.name.in_((name,) if name else ENGAGEMENT),
            Event.properties["send_key"].as_string() == send_key,
        )
        .order_by(Event.id)
    )
    return list(rows)


async def engagement_of_customer(session: AsyncSession, *, customer_id: str) -> list[Event]:
    """The customer's opens and clicks, oldest first, with their class and reason."""
    rows = await session.scalars(
        select(Event)
        .where(Event.customer_id == customer_id, Event.name.in_(ENGAGEMENT))
        .order_by(Event.id)
    )
    return list(rows)


async def classify_engagement(
    session: AsyncSession,
    *,
    event: Event,
    engagement_class: str,
    reason: str,
    detail: str | None,
    move_to: str | None = None,
    properties: dict[str, Any] | None = None,
) -> Event:
    """Write the class of a recorded open or click (``properties``: added to its own).
    ``move_to``: the message id it is kept under from now on (a machine's open or click
    is kept apart, so that a person's later one of the same email is recorded, not counted
    as its repeat); if an event already has it, this one is counted as its repeat and
    deleted, and that one is returned."""
    if move_to is not None and move_to != event.message_id:
        other = await session.scalar(select(Event).where(Event.message_id == move_to))
        if other is not None:
            other.repeats += 1 + event.repeats
            await session.delete(event)
            await session.flush()
            return other
        event.message_id = move_to
    event.engagement_class = engagement_class
    event.engagement_reason = reason
    event.engagement_detail = detail or None
    if properties:
        event.properties = {**(event.properties or {}), **properties}
    await session.flush()
    return event


async def event_by_message_id(session: AsyncSession, *, message_id: str) -> Event | None:
    return await session.scalar(select(Event).where(Event.message_id == message_id))


async def last_human_engagement(session: AsyncSession, *, customer_id: str) -> datetime | None:
    """When the customer last opened or clicked an email as a person (machine engagement
    aside): what sending the engaged first reads (core/pacing.py)."""
    found = await session.scalar(
        select(func.max(Event.occurred_at)).where(
            Event.customer_id == customer_id,
            Event.name.in_(ENGAGEMENT),
            Event.engagement_class.is_distinct_from("machine"),
        )
    )
    return found
