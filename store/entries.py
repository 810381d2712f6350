"""Entry rules in the store: when a customer entered a journey before (``journey_entries``,
written by each run as it starts), and an entry refused by the journey's ``[entry]`` rule,
kept as the run's decision ``entry: refused`` (what ``explain`` lists with its reason)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.decisions import record_decision
from store.models import JourneyEntry

REFUSED = "refused"


async def entered(session: AsyncSession, *, customer_id: str, journey: str) -> list[datetime]:
    """When the customer entered ``journey``, oldest first."""
    rows = await session.scalars(
        select(JourneyEntry.entered_at)
        .where(JourneyEntry.customer_id == customer_id, JourneyEntry.journey == journey)
        .order_by(JourneyEntry.entered_at)
    )
    return list(rows)


async def record_refusal(
    session: AsyncSession,
    *,
    customer_id: str,
    journey: str,
    workflow_id: str,
    reason: str,
    at: datetime,
) -> None:
    """An entry the rule refused, under the id the run would have had."""
    await record_decision(
        session,
        customer_id=customer_id,
        journey=journey,
        workflow_id=workflow_id,
        run_chain_id=f"refused:{at:%Y%m%dT%H%M%S%f}",
        name="entry",
        value=REFUSED,
        reason=reason,
        decided_at=at,
    )
