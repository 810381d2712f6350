"""Repeated stimulation: a first-time buyer who does not come back gets thanks and a coupon
every month, one round per step of journeys/stimulation.toml (five by default). Trigger: a
first "Order Completed" of at least ``min_first_order`` (id ``stimulation:<customer>``, once
ever). Each round that goes out is recorded with its evaluation window (``evaluation_window``,
10 days: the effect report's per-step figure for that window). Leaves at once on another order
(signal ``order_placed``, and the gate for an order whose signal never came): "ordered".
Otherwise "completed"."""

from __future__ import annotations

from temporalio import workflow

from workflows.base import Journey

with workflow.unsafe.imports_passed_through():
    from core.contracts import JourneyResult, OrderSeen, StimulationInput


@workflow.defn(name="RepeatedStimulation")
class RepeatedStimulation(Journey):
    @workflow.init
    def __init__(self, inp: StimulationInput) -> None:
        super().__init__(inp)
        self._first_order = inp.order_id

    @workflow.signal
    def order_placed(self, order: OrderSeen) -> None:
        if order.order_id != self._first_order:
            self.exit("ordered")

    @workflow.run
    async def run(self, inp: StimulationInput) -> JourneyResult:
        return await self.walk(self.timeline(inp))

    async def timeline(self, inp: StimulationInput) -> str:
        window = inp.config.evaluation_window
        for number, step in enumerate(inp.config.steps, start=1):
            await self.wait_until(self.entered_at + step.after, step)
            sent = await self.send(step, ignore_order_id=inp.order_id, context={"round": number})
            if sent.status in ("sent", "held_out"):  # held out: the control's figure
                until = workflow.now() + window
                await self.decide(
                    step.name, "evaluate", f"{window.days}-day window until {until:%Y-%m-%d}"
                )
        return "completed"
