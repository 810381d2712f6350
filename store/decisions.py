"""What journey runs decided (recorded once per run and name), and which journeys an operator
paused.

The caller owns the transaction (``async with sessions.begin() as s``); see ``store.repo``
for how concurrent writers are kept apart.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import JourneyDecision, JourneyPause


async def record_decision(
    session: AsyncSession,
    *,
    customer_id: str,
    journey: str,
    workflow_id: str,
    run_chain_id: str,
    name: str,
    value: str,
    reason: str | None,
    decided_at: datetime,
) -> None:
    """Once per run and name: a retried activity records nothing twice."""
    found = await session.scalar(
        select(JourneyDecision.id).where(
            JourneyDecision.workflow_id == workflow_id,
            JourneyDecision.run_chain_id == run_chain_id,
            JourneyDecision.name == name,
        )
    )
    if found is None:
        session.add(
            JourneyDecision(
                customer_id=customer_id,
                journey=journey,
                workflow_id=workflow_id,
                run_chain_id=run_chain_id,
                name=name,
                value=value,
                reason=reason,
                decided_at=decided_at,
            )
        )
        await session.flush()


async def journey_pause(session: AsyncSession, *, journey: str) -> JourneyPause | None:
    return await session.get(JourneyPause, journey)


async def set_journey_pause(
    session: AsyncSession, *, journey: str, paused: bool, reason: str | None = None
) -> bool:
    """Pause or resume a whole journey; False when it already was so."""
    found = await session.get(JourneyPause, journey)
    if paused and found is None:
        session.add(JourneyPause(journey=journey, reason=reason))
    elif not paused and found is not None:
        await session.delete(found)
    else:
        return False
    await session.flush()
    return True
