"""Browse follow-up: a product looked at again and again, but not bought.

Trigger: the customer viewed the same product (or products of one category) ``min_views``
times without buying it (signal-with-start of ``product_viewed``; id
``browse-follow-up:<customer>``, one live run per customer). The run stays on that product
whatever else they look at. Timeline (journeys/browse_follow_up.toml): once they have stayed
away for ``away_for`` (each new view, of any product, restarts that wait): the product's
reviews. If they click through or view it again before
``coupon.after`` has passed -> at once a recommendation of it with accessories from its
category. If they neither open, click nor come back by then -> a coupon for it.
Leaves at once when they buy the product (signal ``order_placed``; the gate checks the store).
Signals: ``product_viewed``, ``order_placed``, ``customer_left``, ``engaged``.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

from workflows.base import Journey

with workflow.unsafe.imports_passed_through():
    from core.contracts import BrowseInput, Engagement, JourneyResult, OrderSeen, ProductView
    from journeys.config import StepConfig


@workflow.defn(name="BrowseFollowUp")
class BrowseFollowUp(Journey):
    ordered_outcome = "bought"

    @workflow.init
    def __init__(self, inp: BrowseInput) -> None:
        super().__init__(inp)
        self._sku = inp.sku
        self._last_view: datetime = workflow.now()
        self._watching = False  # after the reviews email: a view or click is "interest"
        self._interest = False

    @workflow.signal
    def product_viewed(self, view: ProductView) -> None:
        if self._watching:
            self._interest = self._interest or view.sku == self._sku
            return
        # Code version 1 followed whatever was viewed last; the reviews email is about the
        # product that started the run.
        if view.sku != self._sku and not workflow.patched("browse-stays-on-its-product"):
            self._sku = view.sku
        self._last_view = workflow.now()

    @workflow.signal
    def order_placed(self, order: OrderSeen) -> None:
        if self._sku in order.skus:
            self.exit("bought")

    @workflow.signal
    def engaged(self, engagement: Engagement) -> None:
        super().engaged(engagement)
        if self._watching and engagement.kind == "clicked":
            self._interest = True

    @workflow.run
    async def run(self, inp: BrowseInput) -> JourneyResult:
        return await self.walk(self.timeline(inp))

    async def timeline(self, inp: BrowseInput) -> str:
        config = inp.config
        reviews = config.step("reviews")

        # Once they have stayed away for `away_for` (every view restarts the wait): reviews.
        await self.wait_quiet(
            reviews, last_change=lambda: self._last_view, quiet_for=config.away_for
        )
        await self._offer(reviews)
        self._watching = True
        reviewed_at = workflow.now()

        # Interest shown before the coupon is due -> recommendation at once; else the coupon.
        coupon = config.step("coupon")
        await self.wait_until(reviewed_at + coupon.after, coupon, also=lambda: self._interest)
        facts = await self.facts(
            order_skus=[self._sku], view_sku=self._sku, views_after_step="reviews"
        )
        if facts.ordered:
            return "bought"
        if self._interest or facts.clicked or facts.viewed_again:
            await self.decide("interest", "recommendation", "clicked through or viewed it again")
            await self._offer(config.step("recommendation"))
            return "recommended"
        if facts.opened:
            await self.decide("interest", "none", "opened the reviews, nothing more")
            return "completed"
        await self.decide("interest", "coupon", f"no open, click or visit within {coupon.after}")
        await self._offer(coupon)
        return "completed"

    async def _offer(self, step: StepConfig) -> None:
        await self.send(step, context={"product_sku": self._sku}, order_skus=[self._sku])
