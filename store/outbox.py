"""The outbox: Temporal work committed with its event, handed out in order per customer.

A customer's rows are delivered oldest first: only the customer's oldest row that is not
parked (its *head*) and the rows right after it, as long as each is for another run (a
*wave*: ``claim_waves``), can be claimed; the rows after a wave wait until all of it was
taken. A run's rows are so never delivered out of order or at the same time, and rows
for different runs that follow one another in the customer's order (an order tells every
live journey, then starts the nurture) go to Temporal together. A claim is a lease
(owner, until) taken by an atomic UPDATE, so two relays (two API processes, a CLI) never
deliver the same row at once and no transaction stays open while Temporal is called. A
lease that runs out (its holder died) can be taken by another relay.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from itertools import takewhile
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


WAVE_MAX = 16  # rows of one customer claimed and delivered together at most


async def claim_waves(
    session: AsyncSession,
    *,
    task_queue: str,
    customer_ids: Collection[str],
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int = WAVE_MAX,
) -> dict[str, list[Outbox]]:
    """Lease each of these customers' head row and the rows right after it to ``owner``,
    oldest first, up to ``limit`` per customer: a customer's wave ends before a row for a
    run already in it, a row waiting to be retried, or one another owner holds. One read
    and one UPDATE for all of them (a relay delivering to a hundred customers takes one
    transaction for all their waves, not a hundred: on SQLite each is a turn of the one
    write lock). Customer id → wave, only for the customers whose head is free and due."""
    if not customer_ids:
        return {}
    place = (
        func.row_number().over(partition_by=Outbox.customer_id, order_by=Outbox.id).label("place")
    )
    heads = (
        select(Outbox.id, place)
        .where(
            Outbox.task_queue == task_queue,
            Outbox.customer_id.in_(sorted(set(customer_ids))),
            Outbox.parked_at.is_(None),
        )
        .subquery()
    )
    rows = await session.scalars(
        select(Outbox)
        .join(heads, heads.c.id == Outbox.id)
        .where(heads.c.place <= limit)
        .order_by(Outbox.customer_id, Outbox.id)
    )
    waves: dict[str, list[Outbox]] = {}
    ended: set[str] = set()
    runs: dict[str, set[str]] = {}
    for row in rows:
        cid = row.customer_id
        if cid in ended:
            continue
        held = row.lease_until is not None and row.lease_until >= now and row.lease_owner != owner
        seen = runs.setdefault(cid, set())
        if row.workflow_id in seen or row.next_attempt_at > now or held:
            ended.add(cid)
            continue
        waves.setdefault(cid, []).append(row)
        seen.add(row.workflow_id)
    if not waves:
        return {}
    wanted = [row.id for wave in waves.values() for row in wave]
    taken = set(
        await session.scalars(
            update(Outbox)
            .where(
                Outbox.id.in_(wanted),
                _free(owner, now),
                Outbox.parked_at.is_(None),  # as read above, unless another relay moved it since
                Outbox.next_attempt_at <= now,
            )
            .values(lease_owner=owner, lease_until=now + lease)
            .returning(Outbox.id)
            .execution_options(synchronize_session=False)
        )
    )
    kept = {cid: list(takewhile(lambda row: row.id in taken, wave)) for cid, wave in waves.items()}
    back = taken - {row.id for wave in kept.values() for row in wave}
    if back:  # another relay took one meanwhile: give back what follows it
        await session.execute(
            update(Outbox)
            .where(Outbox.id.in_(back), Outbox.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
    return {cid: wave for cid, wave in kept.items() if wave}


async def delivered(session: AsyncSession, *, row_ids: list[int]) -> None:
    """Delete these rows: Temporal took them (or a signal found nobody listening)."""
    await session.execute(delete(Outbox).where(Outbox.id.in_(row_ids)))


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
