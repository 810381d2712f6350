"""Birthday greeting: a greeting and a gift coupon (valid 7 days) on the customer's birthday
in their own time zone. Trigger: the daily sweep (id ``birthday:<customer>:<year>``, so once a
year). Same gate as every journey (suppression, cap, holdout, quiet hours)."""

from __future__ import annotations

from temporalio import workflow

from workflows.base import Journey

with workflow.unsafe.imports_passed_through():
    from core.contracts import BirthdayInput, JourneyResult


@workflow.defn(name="BirthdayGreeting")
class BirthdayGreeting(Journey):
    @workflow.init
    def __init__(self, inp: BirthdayInput) -> None:
        super().__init__(inp)

    @workflow.run
    async def run(self, inp: BirthdayInput) -> JourneyResult:
        return await self.walk(self.timeline(inp))

    async def timeline(self, inp: BirthdayInput) -> str:
        outcome = await self.send(inp.config.step("greeting"))
        return "greeted" if outcome.status == "sent" else outcome.status
