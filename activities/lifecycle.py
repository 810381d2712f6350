"""The lifecycle part of the daily sweep, one keyset page per call: ``stages`` brings the
page's stages up to date, set-based (store/lifecycle.py), and writes each change to the event
log as "Lifecycle Stage Changed"; ``vip_care`` starts VIP care for VIPs (once a year);
``holidays`` starts a greeting for customers whose local date is a holiday (once per holiday
and year). Starts go through core.starting with deterministic ids, so a rerun of the same day
starts nobody twice."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.client import Client

from core.calendar_days import holiday_on
from core.contracts import (
    HolidayInput,
    JourneyInput,
    LifecyclePageInput,
    SweepPageResult,
    VipCareInput,
)
from core.ids import holiday_id, stage_change_id, vip_care_id
from core.lifecycle import label
from core.rules import zone
from core.stage_starts import StageChange, stage_change_properties, starts_on
from core.starting import entry_refusal, start_journey
from store import entries, events
from store import lifecycle as stages
from store.db import SessionFactory

STAGE_CHANGED = "Lifecycle Stage Changed"
STARTS_AT_ONCE = 20


class LifecycleActivities:
    def __init__(self, *, sessions: SessionFactory, client: Client | None = None) -> None:
        self._sessions = sessions
        self._client = client

    @activity.defn(name="lifecycle_page")
    async def lifecycle_page(self, req: LifecyclePageInput) -> SweepPageResult:
        """One page of a phase; ``selected`` = looked at (stages) or chosen, ``started`` =
        changed (stages) or runs started. Idempotent: a retry changes and starts nothing
        twice."""
        if req.phase == "stages":
            return await self._stages(req)
        if req.phase == "vip_care":
            return await self._vip_care(req)
        if req.phase == "holidays":
            return await self._holidays(req)
        raise ValueError(f"unknown lifecycle phase {req.phase!r}")

    async def _stages(self, req: LifecyclePageInput) -> SweepPageResult:
        """Also starts the journeys whose ``[start_on]`` matches a change (their entry
        rules checked here, as the starter does; the ids keep a rerun from starting twice)."""
        runs: list[tuple[str, JourneyInput]] = []
        async with self._sessions.begin() as s:
            page = await stages.refresh_page(
                s,
                as_of=req.as_of,
                config=req.lifecycle,
                after_id=req.after_id,
                limit=req.page_size,
            )
            for change in page.changes:
                await events.record_event(
                    s,
                    message_id=stage_change_id(
                        change.customer_id, change.stage, change.vip, req.as_of
                    ),
                    customer_id=change.customer_id,
                    name=STAGE_CHANGED,
                    properties={
                        **stage_change_properties(
                            change.previous, change.stage, change.vip, change.became_vip
                        ),
                        "source": "daily sweep",
                    },
                    occurred_at=req.as_of,
                )
                runs += starts_on(
                    StageChange(
                        customer_id=change.customer_id,
                        previous=change.previous,
                        stage=change.stage,
                        became_vip=change.became_vip,
                        at=req.as_of,
                        label=label(change.stage, vip=change.vip, repeat_buyer=False),
                    ),
                    {"vip_care": req.vip_care},
                )
            runs = [run for run in runs if not await self._refused(s, run, req.as_of)]
        if runs:
            await self._start_all(runs)
        return SweepPageResult(
            selected=page.looked_at, started=len(page.changes), next_after=page.next_after
        )

    async def _vip_care(self, req: LifecyclePageInput) -> SweepPageResult:
        assert req.vip_care is not None
        async with self._sessions() as s:
            rows, next_after = await stages.reachable_page(
                s, vip_only=True, after_id=req.after_id, limit=req.page_size
            )
        runs: list[tuple[str, JourneyInput]] = [
            (
                vip_care_id(cid, req.as_of.year),
                VipCareInput(
                    customer_id=cid,
                    config=req.vip_care,
                    year=req.as_of.year,
                    lifecycle_stage=label(stage or "active", vip=True, repeat_buyer=False),
                ),
            )
            for cid, _, stage in rows
        ]
        started = await self._start_all(runs)
        return SweepPageResult(selected=len(runs), started=started, next_after=next_after)

    async def _holidays(self, req: LifecyclePageInput) -> SweepPageResult:
        config = req.holidays
        assert config is not None
        # The local dates somewhere on earth at as_of: nothing to do when none is a holiday.
        days = {(req.as_of + timedelta(hours=h)).date() for h in (-12, 0, 14)}
        if not any(holiday_on(day, config) for day in days):
            return SweepPageResult(selected=0, started=0, next_after=None)
        async with self._sessions() as s:
            rows, next_after = await stages.reachable_page(
                s, stages=config.stages, after_id=req.after_id, limit=req.page_size
            )
        runs: list[tuple[str, JourneyInput]] = []
        for cid, tz, stage in rows:
            local: date = req.as_of.astimezone(zone(tz)).date()
            name = holiday_on(local, config)
            if name is not None:
                inp = HolidayInput(
                    customer_id=cid, config=config, holiday=name, day=local, lifecycle_stage=stage
                )
                runs.append((holiday_id(cid, name, local.year), inp))
        started = await self._start_all(runs)
        return SweepPageResult(selected=len(runs), started=started, next_after=next_after)

    async def _refused(self, s: AsyncSession, run: tuple[str, JourneyInput], now: datetime) -> bool:
        """The journey's ``[entry]`` rule refuses this start: recorded with why."""
        wf_id, inp = run
        rule = inp.config.entry
        if rule is None:
            return False
        journey = inp.config.name
        before = await entries.entered(s, customer_id=inp.customer_id, journey=journey)
        why = entry_refusal(rule, before, now)
        if why is not None:
            await entries.record_refusal(
                s,
                customer_id=inp.customer_id,
                journey=journey,
                workflow_id=wf_id,
                reason=why,
                at=now,
            )
        return why is not None

    async def _start_all(self, runs: Sequence[tuple[str, JourneyInput]]) -> int:
        """Start each run once ever (its id decides); how many were new."""
        if self._client is None:
            raise RuntimeError("the lifecycle sweep's journeys need a Temporal client")
        client, queue = self._client, activity.info().task_queue
        limit = asyncio.Semaphore(STARTS_AT_ONCE)

        async def start(wf_id: str, inp: JourneyInput) -> bool:
            async with limit:
                return await start_journey(client, inp, task_queue=queue, run_id=wf_id)

        return sum(await asyncio.gather(*(start(wf_id, inp) for wf_id, inp in runs)))
