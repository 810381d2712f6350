"""Welcome series: greet a new customer, help, ask, then branch on what they did.

Trigger: "Signed Up" (id ``welcome-series:<customer>``, once per customer ever).
Timeline (journeys/welcome_series.toml), counted from the signup: welcome + account info +
first-order coupon at once; "need help?" on day 2; feedback / why shop with us on day 5.
Around day 7, from the store: ordered -> thank-you with cross-sell, and leave (ordered
with the welcome coupon: the thank-you says so, branch "used_coupon"); opened or clicked
(human opens only) but not ordered -> a time-limited gift offer; opened nothing -> tagged for
reactivation, but only if an email of the series was sent (held out: "held_out"; none went
out: "not_mailed"; neither is tagged). Around day 12 the gift branch splits on order again;
everyone left gets the preferences email (with a birthday request when the birthday is
unknown).
Signals: ``order_placed`` (a step with on_order = "exit" leaves at once), ``customer_left``,
``engaged``. Every branch taken is recorded (journey_decisions, and the ``state`` query).
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from workflows.base import Condition, Journey

with workflow.unsafe.imports_passed_through():
    from core.contracts import JourneyResult, OrderSeen, SendOutcome, WelcomeInput
    from core.rules import in_holdout
    from journeys.config import StepConfig


@workflow.defn(name="WelcomeSeries")
class WelcomeSeries(Journey):
    @workflow.init
    def __init__(self, inp: WelcomeInput) -> None:
        super().__init__(inp)
        self._ordered = False

    @workflow.signal
    def order_placed(self, order: OrderSeen) -> None:
        self._ordered = True

    @workflow.run
    async def run(self, inp: WelcomeInput) -> JourneyResult:
        return await self.walk(self.timeline(inp))

    async def timeline(self, inp: WelcomeInput) -> str:
        # Day 0, 2, 5: welcome with the first-order coupon, help, feedback.
        for name in ("welcome", "need_help", "feedback"):
            await self._step(name)

        # Around day 7: what did they do since the welcome?
        await self._wait_for(inp.config.step("thank_you"))
        facts = await self.facts()
        if facts.ordered:
            if facts.used_coupon and workflow.patched("welcome-thanks-for-the-coupon"):
                # The plan's "used the coupon": thanks for using it, with the cross-sell.
                await self.decide("day_7", "used_coupon", "ordered with the welcome coupon")
                context = {"order_id": "latest", "used_coupon": True}
                await self._step("thank_you", context=context)
                return "ordered"
            await self.decide("day_7", "ordered", "ordered since signing up")
            await self._step("thank_you", context={"order_id": "latest"})
            return "ordered"
        if facts.opened:
            await self.decide("day_7", "gift_offer", "opened or clicked, not ordered")
            await self._step("gift_offer")
        elif not self.was_sent() and workflow.patched("welcome-tags-only-the-mailed"):
            # Nothing went out, so nothing could be opened (code version 1 tagged them).
            await self._not_mailed()
        else:
            await self.decide("day_7", "reactivation", "opened nothing since the welcome")
            await self.tag("reactivation")

        # Around day 12: the gift branch splits on order again; everyone left: preferences.
        await self._wait_for(inp.config.step("preferences"))
        if self.branch("day_7") == "gift_offer" and (await self.facts()).ordered:
            await self.decide("day_12", "ordered", "ordered after the gift offer")
            return "ordered"
        await self._step("preferences")
        return "completed"

    async def _not_mailed(self) -> None:
        config = self.config
        if in_holdout(self.customer_id, config.name, config.holdout_share):
            await self.decide("day_7", "held_out", "the control group: nothing sent, not tagged")
        else:
            await self.decide("day_7", "not_mailed", "no email of the series went out")

    def _ordered_ends(self, step: StepConfig) -> Condition | None:
        """An order ends the series at a step with on_order = "exit" (and wakes its wait)."""
        return (lambda: self._ordered) if step.on_order == "exit" else None

    async def _wait_for(self, step: StepConfig) -> None:
        await self.wait_until(self.entered_at + step.after, step, also=self._ordered_ends(step))

    async def _step(self, name: str, **send: Any) -> SendOutcome:
        """Wait for the step's day and send it."""
        step = self.config.step(name)
        await self._wait_for(step)
        if self._ordered and step.on_order == "exit":
            self.leave("ordered")
        return await self.send(step, also=self._ordered_ends(step), **send)
