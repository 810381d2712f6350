"""The outbox: Temporal work committed with its event, handed out in order per customer.

A customer's rows are delivered oldest first, one at a time: only the customer's oldest
row that is not parked (its *head*) can be claimed. A claim is a lease (owner, until) taken
by an atomic UPDATE, so two relays (two API processes, a CLI) never deliver the same row at
once and no transaction stays open while Temporal is called. A lease that runs out (its
holder died) can be taken by another relay.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from store.models import Outbox, utcnow


async def enqueue(
    session: AsyncSession,
    *,
    task_queue: str,
    customer_id: str,
    kind: str,
    workflow_id: str,
    payload: dict[str, Any],
    source: str | None,
) -> int:
    """Add one piece of work in the caller's transaction; its id orders it."""
    row = Outbox(
        task_queue=task_queue,
        customer_id=customer_id,
        kind=kind,
        workflow_id=workflow_id,
        payload=payload,
        source=source,
        created_at=utcnow(),
        attempts=0,
        next_attempt_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    return row.id


def _heads(task_queue: str) -> Any:
    """Each customer's oldest row that is not parked."""
    return (
        select(func.min(Outbox.id))
        .where(Outbox.task_queue == task_queue, Outbox.parked_at.is_(None))
        .group_by(Outbox.customer_id)
    )


def _free(owner: str, now: datetime) -> ColumnElement[bool]:
    return or_(Outbox.lease_until.is_(None), Outbox.lease_until < now, Outbox.lease_owner == owner)


async def due_customers(
    session: AsyncSession, *, task_queue: str, owner: str, now: datetime, limit: int = 100
) -> list[str]:
    """Customers whose head row may be delivered now (free and not waiting to retry),
    those waiting longest first."""
    rows = await session.scalars(
        select(Outbox.customer_id)
        .where(
            Outbox.id.in_(_heads(task_queue)),
            _free(owner, now),
            Outbox.next_attempt_at <= now,
        )
        .order_by(Outbox.id)
        .limit(limit)
    )
    return list(rows)


async def claim_head(
    session: AsyncSession,
    *,
    task_queue: str,
    customer_id: str,
    owner: str,
    now: datetime,
    lease: timedelta,
) -> Outbox | None:
    """Lease the customer's head row to ``owner``; None when there is none, it waits to be
    retried, or another owner holds it."""
    head = await session.scalar(
        select(Outbox)
        .where(
            Outbox.task_queue == task_queue,
            Outbox.customer_id == customer_id,
            Outbox.parked_at.is_(None),
        )
        .order_by(Outbox.id)
        .limit(1)
    )
    if head is None or head.next_attempt_at > now:
        return None
    taken = await session.execute(
        update(Outbox)
        .where(Outbox.id == head.id, _free(owner, now))
        .values(lease_owner=owner, lease_until=now + lease)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return head


async def delivered(session: AsyncSession, *, row_id: int) -> None:
    await session.execute(delete(Outbox).where(Outbox.id == row_id))


async def release(session: AsyncSession, *, row_id: int, owner: str) -> None:
    """Give a claimed row back untried (its relay is stopping)."""
    await session.execute(
        update(Outbox)
        .where(Outbox.id == row_id, Outbox.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )


async def retry_later(
    session: AsyncSession, *, row_id: int, error: str, at: datetime | None
) -> None:
    """Not taken this time: count the attempt, keep the error, free the row (``at``: not
    before then; None: as soon as the relay tries again)."""
    values: dict[str, Any] = {
        "attempts": Outbox.attempts + 1,
        "last_error": error[:2000],
        "lease_owner": None,
        "lease_until": None,
    }
    if at is not None:
        values["next_attempt_at"] = at
    await session.execute(update(Outbox).where(Outbox.id == row_id).values(**values))


async def park(session: AsyncSession, *, row_id: int, error: str) -> None:
    """Temporal refused the row for good: keep it for people to see, deliver the next."""
    await session.execute(
        update(Outbox)
        .where(Outbox.id == row_id)
        .values(
            parked_at=utcnow(),
            last_error=error[:2000],
            attempts=Outbox.attempts + 1,
            lease_owner=None,
            lease_until=None,
        )
    )


async def pending(session: AsyncSession, *, task_queue: str | None = None) -> int:
    """Rows not yet delivered (parked ones excluded)."""
    query = select(func.count(Outbox.id)).where(Outbox.parked_at.is_(None))
    if task_queue is not None:
        query = query.where(Outbox.task_queue == task_queue)
    return int(await session.scalar(query) or 0)


async def rows_of(session: AsyncSession, *, customer_id: str) -> list[Outbox]:
    """A customer's undelivered and parked rows, oldest first (ops, tests)."""
    rows = await session.scalars(
        select(Outbox).where(Outbox.customer_id == customer_id).order_by(Outbox.id)
    )
    return list(rows)
