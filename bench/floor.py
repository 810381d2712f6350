"""The floor: the least a journey can cost on the same Temporal server.

A bare workflow, started by signal-with-start like a journey, that runs one no-op activity
and ends. Workflow code only (the sandbox imports this module); ``python -m
bench.floor_worker`` runs its worker.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

FLOOR_WORKFLOW = "BenchBareJourney"


@activity.defn(name="bench_noop")
async def noop(customer_id: str) -> str:
    return customer_id


@workflow.defn(name=FLOOR_WORKFLOW)
class BareJourney:
    """Signal ``poke`` (the start signal), one activity, done."""

    def __init__(self) -> None:
        self._pokes = 0

    @workflow.signal
    def poke(self, customer_id: str) -> None:
        self._pokes += 1

    @workflow.run
    async def run(self, customer_id: str) -> str:
        result: str = await workflow.execute_activity(
            noop, customer_id, start_to_close_timeout=timedelta(seconds=30)
        )
        return result
