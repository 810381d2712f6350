"""Cart recovery: remind a customer of the cart they left, until they order.

Trigger: a cart change (signal-with-start of ``cart_updated``; id ``cart-recovery:<customer>``,
one live run per customer). Timeline (journeys/cart_recovery.toml): first reminder once the
cart has been quiet for 1 h (each cart change restarts that wait), then reminders on day 2, 3
and 5 and a discount on day 7, counted from when the cart was abandoned; every email shows
the cart as it is at sending time. A click alone does not stop the reminders, unless the
journey says ``skip_reminders_after_click``: then, once the customer has clicked a link in
one of them, the plain reminders still due are skipped; the discount still comes on its day.
Signals: ``cart_updated``, ``order_placed``, ``customer_left`` (unsubscribe, complaint, hard
bounce), ``engaged`` (open/click, kept in the state). Exits at once on an order, an emptied
cart or ``customer_left``; the send gate also catches an order or an unsubscribe whose signal
never came.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

from workflows.base import Journey

with workflow.unsafe.imports_passed_through():
    from core.contracts import CartChange, JourneyInput, JourneyResult, OrderSeen
    from journeys.config import StepConfig


@workflow.defn(name="CartRecovery")
class CartRecovery(Journey):
    # Before one send path, a held reminder (quiet hours, pause) waited for its time even
    # when the customer left meanwhile; runs that held one then keep doing so.
    exit_ends_holds_patch = "cart-recovery-exit-ends-held-send"

    @workflow.init
    def __init__(self, inp: JourneyInput) -> None:
        super().__init__(inp)
        self._cart_changed_at: datetime = workflow.now()
        self._click_skip_is_a_setting = False  # see timeline

    @workflow.signal
    def cart_updated(self, change: CartChange) -> None:
        if change.empty:
            self.exit("cart_emptied")
        else:
            self._cart_changed_at = workflow.now()

    @workflow.signal
    def order_placed(self, order: OrderSeen) -> None:
        self.exit("ordered")

    @workflow.run
    async def run(self, inp: JourneyInput) -> JourneyResult:
        return await self.walk(self.timeline(inp))

    async def timeline(self, inp: JourneyInput) -> str:
        # Asked when the run starts, not at the fork: runs started before the setting existed
        # keep skipping after a click (their config has no say), whenever they get there.
        self._click_skip_is_a_setting = workflow.patched("cart-recovery-click-skip-setting")
        first, *later = inp.config.steps

        # First reminder once the cart has been quiet for `first.after`.
        abandoned_at = await self.wait_quiet(
            first, last_change=lambda: self._cart_changed_at, quiet_for=first.after
        )
        await self.send(first, requires_active_cart=True)

        # Later reminders on fixed days after the cart was abandoned.
        for step in later:
            await self.wait_until(abandoned_at + step.after, step)
            if self._skips_after_click(step):
                self.skip(step, "clicked")
                continue
            await self.send(step, requires_active_cart=True)
        return "completed"

    def _skips_after_click(self, step: StepConfig) -> bool:
        """A plain reminder after a click: skipped where the journey says so (they went back
        to the cart; the discount, the step with a coupon, may still change their mind)."""
        if step.coupon is not None or not self.has_engaged("clicked"):
            return False
        if self._click_skip_is_a_setting:
            return self.config.skip_reminders_after_click
        return workflow.patched("skip-reminders-after-click")  # code version 2 to 3
