"""The daily sweep: sunsets unengaged addresses, finds customers for win-back and birthday
greetings, and starts them.

Trigger: the Temporal Schedule ``daily-sweep`` (starter/schedule.py), once a day at
``[sweep] run_at`` in ``time_zone`` (journeys/win_back.toml). Four phases: the engagement
sunset (SUNSET_AFTER_EMAILS / SUNSET_AFTER_DAYS; first, so nobody sunset today is offered a
win-back), the win-back group, the repeat-purchase group, birthdays. Each page is one
activity: a keyset-paged, set-based query, then one journey per customer with a deterministic
id (a rerun of the same day starts nobody twice), or for the sunset one set-based suppression.
After ``pages_per_run`` pages it continues as new, so its history stays small for a million
customers.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        SWEEP_PHASES as PHASES,
    )
    from core.contracts import (
        LifecycleSweepInput,
        PhaseCount,
        SweepInput,
        SweepPageInput,
        SweepPageResult,
        SweepResult,
    )

SUNSET = "sunset"
# Sweeps started before the sunset phase began with the win-back group.
SUNSET_PATCH = "daily-sweep-sunset-first"

# Sweeps started before lifecycle stages (journeys/lifecycle.toml) leave them out.
LIFECYCLE_PATCH = "daily-sweep-lifecycle-stages"


@workflow.defn(name="DailySweep")
class DailySweep:
    def __init__(self) -> None:
        self._phase = ""
        self._counts: dict[str, PhaseCount] = {}

    @workflow.query
    def progress(self) -> dict[str, PhaseCount]:
        return self._counts

    # Longer than the ~60-line guide: the sweep's phases and pages in one loop, continued-as-new at
    # the page budget; recorded histories replay this order (patched: lifecycle first, sunset)
    @workflow.run
    async def run(self, inp: SweepInput) -> SweepResult:
        as_of = inp.as_of or workflow.now()
        if inp.lifecycle is not None and not inp.counts and workflow.patched(LIFECYCLE_PATCH):
            await workflow.execute_child_workflow(  # stages first: the selections see them
                "LifecycleSweep",
                LifecycleSweepInput(
                    lifecycle=inp.lifecycle,
                    as_of=as_of,
                    pages_per_run=inp.win_back.sweep.pages_per_run,
                    vip_care=inp.vip_care,
                    holidays=inp.holidays,
                ),
                id=f"{workflow.info().workflow_id}:lifecycle",
                result_type=SweepResult,
            )
        fresh = inp.phase == PHASES[0] and not inp.after_id and not inp.counts
        with_sunset = inp.phase == SUNSET or (fresh and workflow.patched(SUNSET_PATCH))
        phases = (SUNSET, *PHASES) if with_sunset else PHASES
        if fresh and with_sunset:
            inp = inp.model_copy(update={"phase": SUNSET})
        counted = (SUNSET, *PHASES) if with_sunset or SUNSET in inp.counts else PHASES
        self._counts = {p: inp.counts.get(p, PhaseCount()) for p in counted}
        pages_left = inp.win_back.sweep.pages_per_run
        for phase in phases[phases.index(inp.phase) :]:
            self._phase = phase
            after: str | None = inp.after_id if phase == inp.phase else ""
            while after is not None:
                if pages_left == 0:
                    workflow.continue_as_new(
                        inp.model_copy(
                            update={
                                "as_of": as_of,
                                "phase": phase,
                                "after_id": after,
                                "counts": self._counts,
                            }
                        )
                    )
                page: SweepPageResult = await workflow.execute_activity(
                    "sweep_page",
                    SweepPageInput(
                        phase=phase,
                        as_of=as_of,
                        after_id=after,
                        page_size=inp.win_back.sweep.page_size,
                        win_back=inp.win_back,
                        birthday=inp.birthday,
                    ),
                    result_type=SweepPageResult,
                    start_to_close_timeout=timedelta(minutes=5),
                    heartbeat_timeout=timedelta(seconds=60),
                    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
                    summary=f"{phase}: page after {after or 'the start'}",
                )
                pages_left -= 1
                count = self._counts[phase]
                count.selected += page.selected
                count.started += page.started
                count.pages += 1
                after = page.next_after
        return SweepResult(as_of=as_of, counts=self._counts)
