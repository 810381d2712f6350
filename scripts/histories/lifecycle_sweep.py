"""Lifecycle sweep: the daily sweep's child that brings every customer's stage up to date
(journeys/lifecycle.toml), paged and continued as new on the way.

It looks at every customer in its store: its branch runs with ``own_store=True``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from core.contracts import LifecycleSweepInput, SweepResult
from core.lifecycle import load_lifecycle
from histories.common import Branch, Handle, check, finished
from journeys.config import HolidayConfig, VipCareConfig
from store.models import Customer
from testkit.data import add_customer, lapsed_customer
from testkit.stack import Stack
from workflows.lifecycle_sweep import LifecycleSweep

JOURNEY = "lifecycle_sweep"


async def stages_paged(stack: Stack, cid: str) -> Handle:
    """A prospect and customers whose last order is 3, 20, 60, 100, 200 and 400 days old,
    two per page and two pages per run: the sweep continues as new once and gives each its
    stage; then the VIP care and holiday phases (code version 2) page through them too."""
    as_of = datetime.now(UTC).replace(microsecond=0)
    want = {f"{cid}-p": "prospect"}
    await add_customer(stack, f"{cid}-p")
    ages = {3: "new", 20: "active", 60: "repurchase_window", 100: "silent", 200: "sleeping"}
    ages[400] = "lost"
    for days, stage in ages.items():
        await lapsed_customer(stack, f"{cid}-{days:03d}", as_of=as_of, orders=[days])
        want[f"{cid}-{days:03d}"] = stage
    handle = await stack.client.start_workflow(
        LifecycleSweep.run,
        LifecycleSweepInput(
            lifecycle=load_lifecycle(stack.settings.journeys_dir),
            as_of=as_of,
            page_size=2,
            pages_per_run=2,
            vip_care=stack.journeys.config("vip_care", VipCareConfig),
            holidays=stack.journeys.config("holidays", HolidayConfig),
        ),
        id=f"lifecycle-sweep:{cid}",
        task_queue=stack.settings.temporal_task_queue,
    )
    result: SweepResult = await finished(handle, seconds=60)
    check(result.counts["stages"].started == len(want), f"{cid}: {result.counts}")
    async with stack.sessions() as s:
        for customer_id, stage in want.items():
            row = await s.get(Customer, customer_id)
            got = row.stage if row else None
            check(got == stage, f"{customer_id}: stage {got}, not {stage}")
    last = await stack.client.get_workflow_handle(handle.id).describe()
    check(last.run_id != handle.first_execution_run_id, f"{cid}: never continued as new")
    return handle


BRANCHES = {
    "stages_paged": Branch(stages_paged, None, own_store=True),
}
