"""The lifecycle part of the daily sweep: one keyset page of customers has its stage brought
up to date, set-based (store/lifecycle.py); each change is written to the event log as
"Lifecycle Stage Changed" (what ``explain`` and the journeys' selections read)."""

from __future__ import annotations

from temporalio import activity

from core.contracts import LifecyclePageInput, SweepPageResult
from store import events
from store import lifecycle as stages
from store.db import SessionFactory

STAGE_CHANGED = "Lifecycle Stage Changed"


class LifecycleActivities:
    def __init__(self, *, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name="lifecycle_page")
    async def lifecycle_page(self, req: LifecyclePageInput) -> SweepPageResult:
        """``stages``: recompute one page's stages; ``selected`` = looked at, ``started`` =
        changed. Idempotent: a retry finds the stages stored and changes nothing."""
        if req.phase != "stages":
            raise ValueError(f"unknown lifecycle phase {req.phase!r}")
        async with self._sessions.begin() as s:
            page = await stages.refresh_page(
                s,
                as_of=req.as_of,
                config=req.lifecycle,
                after_id=req.after_id,
                limit=req.page_size,
            )
            for change in page.changes:
                at = f"{req.as_of:%Y%m%dT%H%M%S}"
                vip = "vip" if change.vip else ""
                await events.record_event(
                    s,
                    message_id=f"lifecycle:{change.customer_id}:{change.stage}:{vip}:{at}",
                    customer_id=change.customer_id,
                    name=STAGE_CHANGED,
                    properties={
                        "stage": change.stage,
                        "previous": change.previous,
                        "vip": change.vip,
                        "became_vip": change.became_vip,
                        "source": "daily sweep",
                    },
                    occurred_at=req.as_of,
                )
        return SweepPageResult(
            selected=page.looked_at, started=len(page.changes), next_after=page.next_after
        )
