"""Effect reports as last computed (table ``report_snapshots``): what the report pages and
their JSON serve while the snapshot is young enough, so a page over a million sends answers
without reading them again (docs/decisions/0023-report-snapshots.md).

Keyword-only functions; the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import insert_for
from store.models import ReportSnapshot


@dataclass(frozen=True)
class Snapshot:
    key: str
    as_of: datetime  # every figure in ``body`` is as of this moment (UTC)
    body: str  # the report's JSON
    took_seconds: float  # computing it took this long


async def load(s: AsyncSession, *, key: str) -> Snapshot | None:
    row = await s.get(ReportSnapshot, key, populate_existing=True)
    if row is None:
        return None
    return Snapshot(key=row.key, as_of=row.as_of, body=row.body, took_seconds=row.took_seconds)


async def as_of(s: AsyncSession, *, key: str) -> datetime | None:
    """When the kept snapshot's figures are from (None: none kept), without its body."""
    found: datetime | None = await s.scalar(
        select(ReportSnapshot.as_of).where(ReportSnapshot.key == key)
    )
    return found


async def save(s: AsyncSession, snapshot: Snapshot) -> bool:
    """Keep ``snapshot`` unless a newer one (a later ``as_of``) is already kept, so two
    processes computing the same report at once leave the later figures. True if kept."""
    values = {
        "as_of": snapshot.as_of,
        "body": snapshot.body,
        "took_seconds": snapshot.took_seconds,
    }
    stmt = insert_for(s)(ReportSnapshot).values(key=snapshot.key, **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[ReportSnapshot.key],
        set_={name: stmt.excluded[name] for name in values},
        where=ReportSnapshot.as_of < stmt.excluded.as_of,
    )
    result = await s.execute(stmt.returning(ReportSnapshot.key))
    return result.first() is not None


async def prune(s: AsyncSession, *, before: datetime) -> int:
    """Forget snapshots whose figures are older than ``before`` (reports asked for once,
    with a ``since`` or windows nobody asks for again). Returns how many."""
    result = await s.execute(delete(ReportSnapshot).where(ReportSnapshot.as_of < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
