"""Birthday greeting: a greeting and a gift coupon (valid 7 days) on the customer's birthday
in their own time zone. Trigger: the daily sweep (id ``birthday:<customer>:<year>``, so once a
year). Same gate as every journey (suppression, cap, holdout, quiet hours)."""

from __future__ import annotations

from temporalio import workflow

from workflows.common import (
    CustomerLeft,
    JourneyInput,
    JourneyResult,
    JourneyRun,
    JourneyState,
    outcome_of,
)

with workflow.unsafe.imports_passed_through():
    from journeys.config import BirthdayConfig


class BirthdayInput(JourneyInput):
    config: BirthdayConfig
    year: int


@workflow.defn(name="BirthdayGreeting")
class BirthdayGreeting:
    @workflow.init
    def __init__(self, inp: BirthdayInput) -> None:
        self._journey = JourneyRun(inp)
        self._exit: str | None = None

    @workflow.signal
    def customer_left(self, left: CustomerLeft) -> None:
        self._exit = left.reason

    @workflow.query
    def state(self) -> JourneyState:
        return self._journey.state

    @workflow.run
    async def run(self, inp: BirthdayInput) -> JourneyResult:
        j = self._journey
        step = inp.config.step("greeting")
        result = await j.send(step, wake=lambda: self._exit is not None)
        if self._exit:
            return j.finish(self._exit)
        if j.leaves(step, result):
            return j.finish(outcome_of(result))
        return j.finish("greeted" if result.status == "sent" else result.status)
