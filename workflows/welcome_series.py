"""Welcome series: greet a new customer, help, ask, then branch on what they did.

Trigger: "Signed Up" (id ``welcome-series:<customer>``, once per customer ever).
Timeline (journeys/welcome_series.toml), counted from the signup: welcome + account info +
first-order coupon at once; "need help?" on day 2; feedback / why shop with us on day 5.
Around day 7, from the store: ordered -> thank-you with cross-sell, and leave; opened or
clicked but not ordered -> a time-limited gift offer; opened nothing -> tagged for
reactivation. Around day 12 the gift branch splits on order again; everyone left gets the
preferences email (with a birthday request when the birthday is unknown).
Signals: ``order_placed`` (a step with on_order = "exit" leaves at once), ``customer_left``,
``engaged``. Every branch taken is recorded (journey_decisions, and the ``state`` query).
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from workflows.common import JourneyWorkflow

with workflow.unsafe.imports_passed_through():
    from core.contracts import JourneyResult, OrderSeen, WelcomeInput


@workflow.defn(name="WelcomeSeries")
class WelcomeSeries(JourneyWorkflow):
    @workflow.init
    def __init__(self, inp: WelcomeInput) -> None:
        self._begin(inp)
        self._ordered = False

    @workflow.signal
    def order_placed(self, order: OrderSeen) -> None:
        self._ordered = True

    @workflow.run
    async def run(self, inp: WelcomeInput) -> JourneyResult:
        j = self._journey

        # Day 0, 2, 5: welcome with the first-order coupon, help, feedback.
        for name in ("welcome", "need_help", "feedback"):
            if ended := await self._step(name):
                return ended

        # Around day 7: what did they do since the welcome?
        await self._wait_for("thank_you")
        if self._exit:
            return j.finish(self._exit)
        facts = await j.facts()
        if facts.ordered:
            await j.decide("day_7", "ordered", "ordered since signing up")
            await self._step("thank_you", context={"order_id": "latest"})
            return j.finish("ordered")
        if facts.opened:
            await j.decide("day_7", "gift_offer", "opened or clicked, not ordered")
            if ended := await self._step("gift_offer"):
                return ended
        else:
            await j.decide("day_7", "reactivation", "opened nothing since the welcome")
            await j.tag("reactivation")

        # Around day 12: the gift branch splits on order again; everyone left: preferences.
        await self._wait_for("preferences")
        if self._exit:
            return j.finish(self._exit)
        if j.state.branches["day_7"].startswith("gift_offer") and (await j.facts()).ordered:
            await j.decide("day_12", "ordered", "ordered after the gift offer")
            return j.finish("ordered")
        if ended := await self._step("preferences"):
            return ended
        return j.finish("completed")

    def _leaving_or_ordered(self) -> bool:
        return self._exit is not None or self._ordered

    async def _wait_for(self, name: str) -> None:
        step = self._journey.config.step(name)
        wake = self._leaving_or_ordered if step.on_order == "exit" else self._leaving
        await self._journey.wait_until(self._journey.entered_at + step.after, step=step, wake=wake)

    async def _step(self, name: str, **send: Any) -> JourneyResult | None:
        """Wait for the step's day and send it; a result when the series ends here."""
        j = self._journey
        step = j.config.step(name)
        await self._wait_for(name)
        if self._exit:
            return j.finish(self._exit)
        if self._ordered and step.on_order == "exit":
            return j.finish("ordered")
        wake = self._leaving_or_ordered if step.on_order == "exit" else self._leaving
        return await self._send(step, wake=wake, **send)
