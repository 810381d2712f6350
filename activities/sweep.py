"""One page of the daily sweep: select (store/sweep.py), then start one journey each; or,
in the "sunset" phase, suppress a page of unengaged addresses (set-based, no journey)."""

from __future__ import annotations

import asyncio
import logging
import tomllib
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

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
from store.models import utcnow

log = logging.getLogger(__name__)

# Starts in flight at once: enough to keep the server busy, few enough for a small one.
STARTS_AT_ONCE = 20


def transactional_templates(journeys_dir: Path) -> frozenset[str]:
    """Templates of the steps every journey TOML marks ``transactional``: their emails are
    no marketing emails, so they do not count towards a sunset."""
    found: set[str] = set()
    for path in sorted(journeys_dir.glob("*.toml")):
        steps = tomllib.loads(path.read_text()).get("steps", [])
        found |= {str(s["template"]) for s in steps if s.get("transactional") and "template" in s}
    return frozenset(found)


def sunset_rule(*, after_emails: int, after_days: int, journeys_dir: Path) -> sweep.SunsetRule:
    """The sunset of SUNSET_AFTER_EMAILS / SUNSET_AFTER_DAYS (settings.py)."""
    return sweep.SunsetRule(
        after_emails=after_emails,
        after=timedelta(days=after_days),
        not_marketing=transactional_templates(journeys_dir),
    )


class SweepActivities:
    def __init__(
        self, *, sessions: SessionFactory, client: Client, sunset: sweep.SunsetRule | None = None
    ) -> None:
        """``sunset``: the engagement sunset's rule; None: the phase selects nobody."""
        self._sessions = sessions
        self._client = client
        self._sunset = sunset

    @activity.defn(name="sweep_page")
    async def sweep_page(self, req: SweepPageInput) -> SweepPageResult:
        win_back = req.win_back
        if req.phase == "birthday":
            return await self._birthdays(req)
        if req.phase == "sunset":
            return await self._sunset_page(req)
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

    async def _sunset_page(self, req: SweepPageInput) -> SweepPageResult:
        """Sunset one page of unengaged addresses: one SELECT, two INSERT ... SELECT, one
        transaction. A sunset is lifted as win-back's is: the "keep writing" button, a
        re-subscribe, an order."""
        rule = self._sunset
        if rule is None or not rule.enabled:
            return SweepPageResult(selected=0, started=0, next_after=None)
        async with self._sessions.begin() as s:
            chosen = await sweep.unengaged_page(
                s, as_of=req.as_of, rule=rule, after_id=req.after_id, limit=req.page_size
            )
            detail = f"{rule.describe()} (sweep of {req.as_of:%Y-%m-%d})"
            await sweep.sunset_unengaged(s, customer_ids=chosen, detail=detail, at=utcnow())
        if chosen:
            log.info("sunset %d unengaged addresses: %s", len(chosen), rule.describe())
        return SweepPageResult(
            selected=len(chosen),
            started=len(chosen),
            next_after=chosen[-1] if len(chosen) == req.page_size else None,
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
