"""Birthday greeting: a greeting and a gift coupon (valid 7 days) on the customer's birthday
in their own time zone. Trigger: the daily sweep (id ``birthday:<customer>:<year>``, so once a
year). Same gate as every journey (suppression, cap, holdout, quiet hours)."""

from __future__ import annotations

from temporalio import workflow

from workflows.common import JourneyWorkflow

with workflow.unsafe.imports_passed_through():
    from core.contracts import BirthdayInput, JourneyResult


@workflow.defn(name="BirthdayGreeting")
class BirthdayGreeting(JourneyWorkflow):
    @workflow.init
    def __init__(self, inp: BirthdayInput) -> None:
        self._begin(inp)

    @workflow.run
    async def run(self, inp: BirthdayInput) -> JourneyResult:
        if ended := await self._send(inp.config.step("greeting")):
            return ended
        sent = self._journey.state.decisions[-1].status == "sent"
        return self._journey.finish("greeted" if sent else self._journey.state.decisions[-1].status)
