"""Win-back: a customer gone quiet gets an offer, then a last call, then list cleanup.

Trigger: the daily sweep (workflows/sweep.py; id ``win-back:<customer>:<last order date>``,
so once per lapse). Timeline (journeys/win_back.toml): the offer at once (win-back group:
new arrivals + coupon; repeat-purchase group: best sellers). Any open, click or order before
the last call is due ends the journey (an order: "won_back"). No reaction: the last call,
"should we stop writing?", with a one-click way to stay. No open, click or order within
``sunset_after`` of it: the address is sunset (suppressed for marketing email, the reason and
date recorded); a later order or a re-subscribe brings it back.
Signals: ``order_placed``, ``engaged``, ``customer_left``.
"""

from __future__ import annotations

from temporalio import workflow

from workflows.common import SEND_ACTIVITY_TIMEOUT, JourneyWorkflow

with workflow.unsafe.imports_passed_through():
    from core.contracts import Engagement, JourneyResult, OrderSeen, SunsetInput, WinBackInput
    from journeys.config import StepConfig


@workflow.defn(name="WinBack")
class WinBack(JourneyWorkflow):
    @workflow.init
    def __init__(self, inp: WinBackInput) -> None:
        self._begin(inp)
        self._ordered = self._engaged = False

    @workflow.signal
    def order_placed(self, order: OrderSeen) -> None:
        self._ordered = True

    @workflow.signal
    def engaged(self, engagement: Engagement) -> None:
        super().engaged(engagement)
        self._engaged = True

    def _reacted(self) -> bool:
        return self._exit is not None or self._ordered or self._engaged

    @workflow.run
    async def run(self, inp: WinBackInput) -> JourneyResult:
        j, config = self._journey, inp.config
        if inp.group == "win_back":
            offer, picks = config.step("win_back_offer"), "new_arrivals"
        else:
            offer, picks = config.step("repurchase_offer"), "best_sellers"
        if ended := await self._email(offer, picks):
            return ended

        # Wait for an open, a click or an order until the last call is due.
        last_call = config.step("last_call")
        await j.wait_until(j.entered_at + last_call.after, step=last_call, wake=self._reacted)
        if ended := await self._reaction("offer"):
            return ended
        if ended := await self._email(last_call, None):
            return ended

        # The last call: nothing within sunset_after -> sunset the address.
        called_at = workflow.now()
        await j.wait_until(
            called_at + config.sunset_after,
            step=last_call,
            wake=self._reacted,
            summary=f"wait {config.sunset_after} for a sign of life before sunset",
        )
        if ended := await self._reaction("last_call"):
            return ended
        reason = f"no open, click or order within {config.sunset_after} of the last call"
        await j.decide("after_last_call", "sunset", reason)
        await workflow.execute_activity(
            "sunset_customer",
            SunsetInput(customer_id=j.customer_id, reason=reason),
            start_to_close_timeout=SEND_ACTIVITY_TIMEOUT,
            summary="sunset the address",
        )
        return j.finish("sunset")

    async def _reaction(self, after: str) -> JourneyResult | None:
        """End the journey if the customer reacted (signals, confirmed by the store)."""
        j = self._journey
        if self._exit:
            return j.finish(self._exit)
        facts = await j.facts()
        if self._ordered or facts.ordered:
            await j.decide(f"after_{after}", "ordered", "ordered")
            return j.finish("won_back")
        if self._engaged or facts.opened:
            await j.decide(f"after_{after}", "engaged", "opened or clicked")
            return j.finish("stayed" if after == "last_call" else "engaged")
        return None

    async def _email(self, step: StepConfig, picks: str | None) -> JourneyResult | None:
        return await self._send(
            step,
            ordered_outcome="won_back",
            context={"picks": picks} if picks else {},
            wake=self._reacted,
        )
