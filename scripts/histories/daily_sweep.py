"""Daily sweep: a sweep that pages through every phase and continues as new on the way; and
the helpers the sweep-driven journeys (win-back, birthday) share: lapsed customers and a sweep
with a fixed "today".

The sweep looks at every customer in its store: its branches (here, in win_back.py and
birthday.py) run with ``own_store=True``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from temporalio.client import WorkflowHandle

from core.contracts import SWEEP_PHASES as PHASES
from core.contracts import SweepInput, SweepResult
from core.zones import zone_at_local_hour
from histories.common import Branch, Handle, check, finished
from journeys.config import BirthdayConfig, WinBackConfig
from testkit.data import add_customer, lapsed_customer
from testkit.stack import Stack
from workflows.sweep import DailySweep

JOURNEY = "daily_sweep"


def today() -> datetime:
    """The sweeps' "today" (``as_of``), to the second."""
    return datetime.now(UTC).replace(microsecond=0)


async def birthday_today(stack: Stack, cid: str, *, as_of: datetime) -> int:
    """A customer (it is about 11:00 where they live) whose birthday it is there at ``as_of``,
    told by a Segment identify; returns the local year (it names the greeting's run)."""
    zone = zone_at_local_hour(11)
    await add_customer(stack, cid, timezone=zone)
    local = as_of.astimezone(ZoneInfo(zone)).date()
    await stack.journeys.identify(
        customer_id=cid, traits={"birthday": f"1990-{local.month:02d}-{local.day:02d}"}
    )
    return local.year


async def sweep(
    stack: Stack,
    sweep_id: str,
    *,
    as_of: datetime,
    page_size: int | None = None,
    pages_per_run: int | None = None,
) -> tuple[WorkflowHandle[DailySweep, SweepResult], SweepResult]:
    """Run the daily sweep as the schedule does, for the day ``as_of`` (paged as asked), to
    its end; it starts the journeys of the customers it finds on the stack's task queue."""
    win_back = stack.journeys.config("win_back", WinBackConfig)
    paging = {"page_size": page_size, "pages_per_run": pages_per_run}
    win_back = win_back.model_copy(
        update={
            "sweep": win_back.sweep.model_copy(
                update={k: v for k, v in paging.items() if v is not None}
            )
        }
    )
    handle = await stack.client.start_workflow(
        DailySweep.run,
        SweepInput(
            win_back=win_back,
            birthday=stack.journeys.config("birthday", BirthdayConfig),
            as_of=as_of,
        ),
        id=sweep_id,
        task_queue=stack.settings.temporal_task_queue,
    )
    result: SweepResult = await finished(handle, seconds=60)
    return handle, result


async def paged_continued_as_new(stack: Stack, cid: str) -> Handle:
    """Four lapsed repeat buyers, two lapsed one-time buyers and a birthday, two per page and
    two pages per run: the sweep continues as new twice (win-back page 3, repeat-purchase
    page 2) and starts one journey each."""
    as_of = today()
    for n in range(4):
        await lapsed_customer(stack, f"{cid}-w{n}", as_of=as_of, orders=[300, 120])
    for n in range(2):
        await lapsed_customer(stack, f"{cid}-r{n}", as_of=as_of, orders=[181])
    await lapsed_customer(stack, f"{cid}-recent", as_of=as_of, orders=[200, 30])  # not lapsed
    await birthday_today(stack, f"{cid}-b", as_of=as_of)
    handle, result = await sweep(
        stack, f"daily-sweep:{cid}", as_of=as_of, page_size=2, pages_per_run=2
    )
    counts = {phase: result.counts[phase] for phase in PHASES}
    want = {"win_back": 4, "repeat_purchase": 2, "birthday": 1}
    for phase, n in want.items():
        got = counts[phase]
        check(got.selected == got.started == n, f"{cid}: {phase} {got}, not {n} started")
    check(counts["win_back"].pages == 3, f"{cid}: win-back pages {counts['win_back']}")
    last = await stack.client.get_workflow_handle(handle.id).describe()
    check(last.run_id != handle.first_execution_run_id, f"{cid}: never continued as new")
    return handle


BRANCHES = {
    "paged_continued_as_new": Branch(paged_continued_as_new, None, own_store=True),
}
