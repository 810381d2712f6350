"""VIP care: a VIP (journeys/lifecycle.toml [vip]: spend or orders) gets a thank-you with
what is coming, tips for what they bought a month later, and early access to new arrivals
two months later. Trigger: the daily sweep (id ``vip-care:<customer>:<year>``, once a year).
Orders do not end it (``on_order = "send"``: they are VIPs). Exits: the base's (left,
bounced); otherwise "completed"."""

from __future__ import annotations

from temporalio import workflow

from workflows.base import Journey

with workflow.unsafe.imports_passed_through():
    from core.contracts import JourneyResult, VipCareInput


@workflow.defn(name="VipCare")
class VipCare(Journey):
    @workflow.init
    def __init__(self, inp: VipCareInput) -> None:
        super().__init__(inp)

    @workflow.run
    async def run(self, inp: VipCareInput) -> JourneyResult:
        return await self.walk(self.timeline(inp))

    async def timeline(self, inp: VipCareInput) -> str:
        for name in ("welcome", "tips", "early_access"):
            step = inp.config.step(name)
            await self.wait_until(self.entered_at + step.after, step)
            context = {"picks": "new_arrivals"} if name == "early_access" else None
            await self.send(step, context=context)
        return "completed"
