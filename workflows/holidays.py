"""Holiday greeting: on a holiday in the customer's own date (journeys/holidays.toml: the
shop country's public holidays, the shop's own dates), a greeting with a gift. Trigger: the
daily sweep (id ``holidays:<customer>:<holiday>:<year>``, once per holiday and year), to the
lifecycle stages the shop chose. Same gate as every journey."""

from __future__ import annotations

from temporalio import workflow

from workflows.base import Journey

with workflow.unsafe.imports_passed_through():
    from core.contracts import HolidayInput, JourneyResult


@workflow.defn(name="HolidayGreeting")
class HolidayGreeting(Journey):
    @workflow.init
    def __init__(self, inp: HolidayInput) -> None:
        super().__init__(inp)

    @workflow.run
    async def run(self, inp: HolidayInput) -> JourneyResult:
        return await self.walk(self.timeline(inp))

    async def timeline(self, inp: HolidayInput) -> str:
        context = {"holiday": inp.holiday}
        outcome = await self.send(inp.config.step("greeting"), context=context)
        return "greeted" if outcome.status == "sent" else outcome.status
