"""Win-back: a customer gone quiet gets an offer, then a last call, then list cleanup.

Trigger: the daily sweep (workflows/sweep.py; id ``win-back:<customer>:<last order date>``,
so once per lapse). Timeline (journeys/win_back.toml): the offer at once (win-back group:
new arrivals + coupon; repeat-purchase group: best sellers). Any open, click or order before
the last call is due ends the journey (an order: "won_back"). No reaction: the last call,
"should we stop writing?", with a one-click way to stay. No open, click or order within
``sunset_after`` of it: the address is sunset (suppressed for marketing email, the reason and
date recorded); a later order or a re-subscribe brings it back. Only a last call that was
sent can sunset: a held-out customer (the control group) walks the same timeline and ends
"held_out", one whose last call did not go out (capped, failed, ...) ends "not_mailed".
Signals: ``order_placed``, ``engaged``, ``customer_left``.
"""

from __future__ import annotations

from temporalio import workflow

from workflows.base import Journey

with workflow.unsafe.imports_passed_through():
    from core.contracts import Engagement, JourneyResult, OrderSeen, SendOutcome, WinBackInput
    from core.rules import in_holdout
    from journeys.config import StepConfig


@workflow.defn(name="WinBack")
class WinBack(Journey):
    ordered_outcome = "won_back"

    @workflow.init
    def __init__(self, inp: WinBackInput) -> None:
        super().__init__(inp)
        self._ordered = self._engaged = False

    @workflow.signal
    def order_placed(self, order: OrderSeen) -> None:
        self._ordered = True

    @workflow.signal
    def engaged(self, engagement: Engagement) -> None:
        super().engaged(engagement)
        self._engaged = True

    def _reacted(self) -> bool:
        return self._ordered or self._engaged

    @workflow.run
    async def run(self, inp: WinBackInput) -> JourneyResult:
        return await self.walk(self.timeline(inp))

    async def timeline(self, inp: WinBackInput) -> str:
        config = inp.config
        if inp.group == "win_back":
            offer, picks = config.step("win_back_offer"), "new_arrivals"
        else:
            offer, picks = config.step("repurchase_offer"), "best_sellers"
        await self._email(offer, picks)

        # Wait for an open, a click or an order until the last call is due.
        last_call = config.step("last_call")
        await self.wait_until(self.entered_at + last_call.after, last_call, also=self._reacted)
        await self._end_on_reaction("offer")
        called = await self._email(last_call, None)

        # The last call: nothing within sunset_after -> sunset the address.
        called_at = workflow.now()
        await self.wait_until(
            called_at + config.sunset_after,
            last_call,
            also=self._reacted,
            summary=f"wait {config.sunset_after} for a sign of life before sunset",
        )
        await self._end_on_reaction("last_call")
        if called.status != "sent" and workflow.patched("win-back-sunsets-only-the-mailed"):
            # No last call reached them: there was nothing to react to (code version 1
            # sunset them all the same, held-out customers included).
            return await self._not_sunset(called)
        reason = f"no open, click or order within {config.sunset_after} of the last call"
        await self.decide("after_last_call", "sunset", reason)
        await self.sunset(reason)
        return "sunset"

    async def _end_on_reaction(self, after: str) -> None:
        """End the journey if the customer reacted (signals, confirmed by the store)."""
        facts = await self.facts()
        if self._ordered or facts.ordered:
            await self.decide(f"after_{after}", "ordered", "ordered")
            self.leave("won_back")
        if self._engaged or facts.opened:
            await self.decide(f"after_{after}", "engaged", "opened or clicked")
            self.leave("stayed" if after == "last_call" else "engaged")

    async def _not_sunset(self, called: SendOutcome) -> str:
        config = self.config
        if in_holdout(self.customer_id, config.name, config.holdout_share):
            value, why = "held_out", "the control group: nothing is sent, nobody is sunset"
        else:
            not_sent = called.reason or called.status
            value, why = "not_mailed", f"the last call was not sent ({not_sent})"
        await self.decide("after_last_call", value, why)
        return value

    async def _email(self, step: StepConfig, picks: str | None) -> SendOutcome:
        return await self.send(step, context={"picks": picks} if picks else {}, also=self._reacted)
