"""One page of the daily sweep: select (store/sweep.py), then start one journey each."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from temporalio import activity
from temporalio.client import Client

from core.contracts import (
    BirthdayInput,
    JourneyInput,
    SweepPageInput,
    SweepPageResult,
    WinBackInput,
)
from core.ids import birthday_id, win_back_id
from core.starting import start_journey
from store import sweep
from store.db import SessionFactory

log = logging.getLogger(__name__)

# Starts in flight at once: enough to keep the server busy, few enough for a small one.
STARTS_AT_ONCE = 20


class SweepActivities:
    def __init__(self, *, sessions: SessionFactory, client: Client) -> None:
        self._sessions = sessions
        self._client = client

    @activity.defn(name="sweep_page")
    async def sweep_page(self, req: SweepPageInput) -> SweepPageResult:
        win_back = req.win_back
        if req.phase == "birthday":
            return await self._birthdays(req)
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
            task_queue=activity.info().task_queue,
        )
        async with self._sessions.begin() as s:
            await sweep.mark_win_back(s, customer_ids=[cid for cid, _ in chosen])
        return SweepPageResult(
            selected=len(chosen),
            started=started,
            next_after=rows[-1][0] if len(rows) == req.page_size else None,
        )

    async def _birthdays(self, req: SweepPageInput) -> SweepPageResult:
        async with self._sessions() as s:
            found, last_seen = await sweep.birthday_page(
                s, as_of=req.as_of, after_id=req.after_id, limit=req.page_size
            )
        started = await self.start_all(
            [
                (
                    birthday_id(cid, year),
                    BirthdayInput(customer_id=cid, config=req.birthday, year=year),
                )
                for cid, year in found
            ],
            task_queue=activity.info().task_queue,
        )
        return SweepPageResult(selected=len(found), started=started, next_after=last_seen)

    async def start_all(self, runs: Sequence[tuple[str, JourneyInput]], *, task_queue: str) -> int:
        """Start each run once ever (its id decides); returns how many were new."""
        limit = asyncio.Semaphore(STARTS_AT_ONCE)

        async def start(wf_id: str, inp: JourneyInput) -> bool:
            async with limit:
                started = await start_journey(
                    self._client, inp, task_queue=task_queue, run_id=wf_id
                )
                if started and activity.in_activity():
                    activity.heartbeat(wf_id)
                return started

        results = await asyncio.gather(*(start(wf_id, inp) for wf_id, inp in runs))
        return sum(results)
