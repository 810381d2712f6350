"""Cart recovery: remind a customer of the cart they left, until they order.

Trigger: a cart change (signal-with-start of ``cart_updated``; id ``cart-recovery:<customer>``,
one live run per customer). Timeline (journeys/cart_recovery.toml): first reminder once the
cart has been quiet for 1 h (each cart change restarts that wait), then reminders on day 2, 3
and 5 and a discount on day 7, counted from when the cart was abandoned; every email shows
the cart as it is at sending time. Once the customer has clicked a link in one of them, the
plain reminders still due are skipped; the discount still comes on its day.
Signals: ``cart_updated``, ``order_placed``, ``customer_left`` (unsubscribe, complaint, hard
bounce), ``engaged`` (open/click, kept in the state). Exits at once on an order, an emptied
cart or ``customer_left``; the send gate also catches an order or an unsubscribe whose signal
never came.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

from workflows.common import JourneyWorkflow, outcome_of

with workflow.unsafe.imports_passed_through():
    from core.contracts import CartChange, JourneyInput, JourneyResult, OrderSeen


@workflow.defn(name="CartRecovery")
class CartRecovery(JourneyWorkflow):
    @workflow.init
    def __init__(self, inp: JourneyInput) -> None:
        self._begin(inp)
        self._cart_changed_at: datetime = workflow.now()

    @workflow.signal
    def cart_updated(self, change: CartChange) -> None:
        if change.empty:
            self._exit = "cart_emptied"
        else:
            self._cart_changed_at = workflow.now()

    @workflow.signal
    def order_placed(self, order: OrderSeen) -> None:
        self._exit = "ordered"

    @workflow.run
    async def run(self, inp: JourneyInput) -> JourneyResult:
        j = self._journey
        first, *later = inp.config.steps

        # First reminder after the cart has been quiet for `first.after`.
        while True:
            changed_at = self._cart_changed_at
            woke = await j.wait_until(
                changed_at + first.after,
                step=first,
                wake=lambda at=changed_at: self._exit is not None or self._cart_changed_at != at,  # type: ignore[misc]
            )
            if self._exit:
                return j.finish(self._exit)
            if not woke:
                break
        abandoned_at = self._cart_changed_at
        result = await j.send(first, requires_active_cart=True)
        if result.ends_journey:
            return j.finish(outcome_of(result))

        # Later reminders on fixed days after the cart was abandoned.
        for step in later:
            await j.wait_until(abandoned_at + step.after, step=step, wake=self._leaving)
            if self._exit:
                return j.finish(self._exit)
            clicked = any(e.kind == "clicked" for e in j.state.engagements)
            if clicked and step.coupon is None and workflow.patched("skip-reminders-after-click"):
                # They went back to the cart: more plain reminders would only nag; the
                # discount (the step with a coupon) is what may still change their mind.
                j.skip(step, "clicked")
                continue
            result = await j.send(step, requires_active_cart=True)
            if result.ends_journey:
                return j.finish(outcome_of(result))
        return j.finish("completed")
