"""One page of the daily sweep: select (store/sweep.py), then start one journey each."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from temporalio import activity
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.types import SweepPageInput, SweepPageResult
from journeys.config import BirthdayConfig, JourneyConfig, WinBackConfig
from store import sweep
from store.db import SessionFactory
from workflows.birthday import BirthdayInput
from workflows.common import CUSTOMER_ID, JOURNEY, JourneyInput
from workflows.win_back import WinBackInput, win_back_id

log = logging.getLogger(__name__)

# Starts in flight at once: enough to keep the server busy, few enough for a small one.
STARTS_AT_ONCE = 20


class SweepActivities:
    def __init__(self, *, sessions: SessionFactory, client: Client) -> None:
        self._sessions = sessions
        self._client = client

    @activity.defn(name="sweep_page")
    async def sweep_page(self, req: SweepPageInput) -> SweepPageResult:
        win_back = WinBackConfig.model_validate(req.win_back)
        if req.phase == "birthday":
            return await self._birthdays(req, BirthdayConfig.model_validate(req.birthday))
        async with self._sessions() as s:
            rows = await sweep.lapsed_page(
                s,
                group=req.phase,
                as_of=req.as_of,
                rules=win_back.selection,
                after_id=req.after_id,
                limit=req.page_size,
            )
            excluded = await sweep.bought_any(
                s,
                customer_ids=[cid for cid, _ in rows],
                skus=set(win_back.selection.never_bought_skus),
            )
        chosen = [(cid, last) for cid, last in rows if cid not in excluded]
        started = await self.start_all(
            [
                (
                    win_back_id(cid, last),
                    WinBackInput(customer_id=cid, config=win_back, group=req.phase),
                )
                for cid, last in chosen
            ],
            "WinBack",
            win_back,
            task_queue=activity.info().task_queue,
        )
        async with self._sessions.begin() as s:
            await sweep.mark_win_back(s, customer_ids=[cid for cid, _ in chosen])
        return SweepPageResult(
            selected=len(chosen),
            started=started,
            next_after=rows[-1][0] if len(rows) == req.page_size else None,
        )

    async def _birthdays(self, req: SweepPageInput, config: BirthdayConfig) -> SweepPageResult:
        async with self._sessions() as s:
            found, last_seen = await sweep.birthday_page(
                s, as_of=req.as_of, after_id=req.after_id, limit=req.page_size
            )
        started = await self.start_all(
            [
                (f"birthday:{cid}:{year}", BirthdayInput(customer_id=cid, config=config, year=year))
                for cid, year in found
            ],
            "BirthdayGreeting",
            config,
            task_queue=activity.info().task_queue,
        )
        return SweepPageResult(selected=len(found), started=started, next_after=last_seen)

    async def start_all(
        self,
        runs: Sequence[tuple[str, JourneyInput]],
        workflow: str,
        config: JourneyConfig,
        *,
        task_queue: str,
    ) -> int:
        """Start each run once ever (the id decides); returns how many were new."""
        limit = asyncio.Semaphore(STARTS_AT_ONCE)

        async def start(wf_id: str, inp: JourneyInput) -> bool:
            async with limit:
                try:
                    await self._client.start_workflow(
                        workflow,
                        inp,
                        id=wf_id,
                        task_queue=task_queue,
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                        search_attributes=TypedSearchAttributes(
                            [
                                SearchAttributePair(CUSTOMER_ID, inp.customer_id),
                                SearchAttributePair(JOURNEY, config.name),
                            ]
                        ),
                        memo={"journey_version": config.version},
                    )
                except WorkflowAlreadyStartedError:
                    return False
                if activity.in_activity():
                    activity.heartbeat(wf_id)
                return True

        results = await asyncio.gather(*(start(wf_id, inp) for wf_id, inp in runs))
        return sum(results)
