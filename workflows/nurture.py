"""New-customer nurture: care for a first-time buyer until they order again.

Trigger: the customer's first "Order Completed" (id ``new-customer-nurture:<customer>``, once
per customer). Timeline (journeys/new_customer_nurture.toml), counted from that order:
thank-you + next-order coupon at once; a shipping notice whenever "Order Shipped" arrives;
care content for the order's product category on day 3; care + review request on day 7; a
one-month gift on day 30; a repurchase nudge on day 45; an offer on day 60.
At most ``first_week_max`` emails within ``first_week``, whatever events arrive (the rest are
skipped and recorded). Leaves at once on a second order (signal ``order_placed``, and the send
gate for an order whose signal never came). Signals: ``order_placed``, ``order_shipped``,
``customer_left``, ``engaged``.
"""

from __future__ import annotations

from collections.abc import Mapping

from temporalio import workflow

from workflows.base import Journey

with workflow.unsafe.imports_passed_through():
    from core.contracts import JourneyResult, NurtureInput, OrderSeen, Shipment
    from journeys.config import StepConfig


@workflow.defn(name="NewCustomerNurture")
class NewCustomerNurture(Journey):
    ordered_outcome = "repeat_customer"

    @workflow.init
    def __init__(self, inp: NurtureInput) -> None:
        super().__init__(inp)
        self._nurture = inp.config
        self._first_order = inp.order_id
        self._shipments: list[Shipment] = []
        self._shipments_seen: set[str] = set()

    @workflow.signal
    def order_placed(self, order: OrderSeen) -> None:
        if order.order_id != self._first_order:
            self.exit("repeat_customer")

    @workflow.signal
    def order_shipped(self, shipment: Shipment) -> None:
        if shipment.shipment_id not in self._shipments_seen and len(self._shipments_seen) < 20:
            self._shipments_seen.add(shipment.shipment_id)
            self._shipments.append(shipment)

    @workflow.run
    async def run(self, inp: NurtureInput) -> JourneyResult:
        return await self.walk(self.timeline(inp))

    async def timeline(self, inp: NurtureInput) -> str:
        config = inp.config
        order = {"order_id": self._first_order}

        await self._touch(config.step("thanks"), order)
        timeline = [
            (config.step("care"), {**order}, config.care_template(inp.category)),
            (config.step("review"), order, None),
            (config.step("one_month_gift"), order, None),
            (config.step("repurchase"), {"order_id": "latest"}, None),
            (config.step("offer"), {"order_id": "latest"}, None),
        ]
        for step, context, template in timeline:
            # Until the step's day, send a shipping notice for each shipment that arrives.
            while True:
                await self.wait_until(
                    self.entered_at + step.after, step, also=lambda: bool(self._shipments)
                )
                if not self._shipments:
                    break
                await self._shipping_notice(self._shipments.pop(0))
            await self._touch(step, context, template=template)
        return "completed"

    async def _shipping_notice(self, shipment: Shipment) -> None:
        base = self._nurture.step("shipping")
        step = base.model_copy(update={"name": f"shipping_{shipment.shipment_id}"[:64]})
        context = {"order_id": shipment.order_id, "tracking_url": shipment.tracking_url}
        await self._touch(step, context)

    async def _touch(
        self, step: StepConfig, context: Mapping[str, str | None], template: str | None = None
    ) -> None:
        """Send, unless the first week already had its emails (skipped and recorded)."""
        limit, week = self._nurture.first_week_max, self._nurture.first_week
        if workflow.now() < self.entered_at + week and self.sent_since(self.entered_at) >= limit:
            self.skip(step, "first_week_limit", f"{limit} emails in {week}")
            return
        await self.send(
            step,
            template=template,
            context={"tracking_url": None, **context},
            ignore_order_id=self._first_order,
        )
