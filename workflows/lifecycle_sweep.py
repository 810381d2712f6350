"""The lifecycle part of the daily sweep: every customer's stage (core/lifecycle.py) brought
up to date for the day, set-based, one keyset page per activity; then (patch
"lifecycle-sweep-journeys") VIP care for VIPs, once a year, and holiday greetings for
customers whose local date is a holiday, once per holiday and year.

Trigger: the daily sweep starts it as a child, before its selections (patch
"daily-sweep-lifecycle-stages"), with journeys/lifecycle.toml as input; id
``<daily sweep id>:lifecycle``. Continues as new every ``pages_per_run`` pages.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        LifecyclePageInput,
        LifecycleSweepInput,
        PhaseCount,
        SweepPageResult,
        SweepResult,
    )

PHASES = ("stages",)
# From the patch "lifecycle-sweep-journeys" on; a phase whose config is None is left out.
JOURNEY_PHASES = ("vip_care", "holidays")


@workflow.defn(name="LifecycleSweep")
class LifecycleSweep:
    def __init__(self) -> None:
        self._counts: dict[str, PhaseCount] = {}

    @workflow.query
    def progress(self) -> dict[str, PhaseCount]:
        return self._counts

    @workflow.run
    async def run(self, inp: LifecycleSweepInput) -> SweepResult:
        phases: tuple[str, ...] = PHASES
        if workflow.patched("lifecycle-sweep-journeys"):
            phases = (*PHASES, *JOURNEY_PHASES)
        self._counts = {p: inp.counts.get(p, PhaseCount()) for p in phases}
        pages_left = inp.pages_per_run
        for phase in phases[phases.index(inp.phase) :]:
            if phase in JOURNEY_PHASES and getattr(inp, phase) is None:  # no config given
                continue
            after: str | None = inp.after_id if phase == inp.phase else ""
            while after is not None:
                if pages_left == 0:
                    workflow.continue_as_new(
                        inp.model_copy(
                            update={"phase": phase, "after_id": after, "counts": self._counts}
                        )
                    )
                page: SweepPageResult = await workflow.execute_activity(
                    "lifecycle_page",
                    LifecyclePageInput(
                        phase=phase,
                        as_of=inp.as_of,
                        after_id=after,
                        page_size=inp.page_size,
                        lifecycle=inp.lifecycle,
                        vip_care=inp.vip_care,
                        holidays=inp.holidays,
                    ),
                    result_type=SweepPageResult,
                    start_to_close_timeout=timedelta(minutes=5),
                    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
                    summary=f"{phase}: page after {after or 'the start'}",
                )
                pages_left -= 1
                count = self._counts[phase]
                count.selected += page.selected
                count.started += page.started
                count.pages += 1
                after = page.next_after
        return SweepResult(as_of=inp.as_of, counts=self._counts)
