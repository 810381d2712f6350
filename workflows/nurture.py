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

from workflows.common import JourneyWorkflow

with workflow.unsafe.imports_passed_through():
    from core.contracts import JourneyResult, NurtureInput, OrderSeen, Shipment
    from journeys.config import NurtureConfig, StepConfig


@workflow.defn(name="NewCustomerNurture")
class NewCustomerNurture(JourneyWorkflow):
    @workflow.init
    def __init__(self, inp: NurtureInput) -> None:
        self._begin(inp)
        self._first_order = inp.order_id
        self._shipments: list[Shipment] = []
        self._shipments_seen: set[str] = set()

    @workflow.signal
    def order_placed(self, order: OrderSeen) -> None:
        if order.order_id != self._first_order:
            self._exit = "repeat_customer"

    @workflow.signal
    def order_shipped(self, shipment: Shipment) -> None:
        if shipment.shipment_id not in self._shipments_seen and len(self._shipments_seen) < 20:
            self._shipments_seen.add(shipment.shipment_id)
            self._shipments.append(shipment)

    @workflow.run
    async def run(self, inp: NurtureInput) -> JourneyResult:
        j, config = self._journey, inp.config
        order = {"order_id": self._first_order}

        if ended := await self._touch(config.step("thanks"), order):
            return ended
        care = config.step("care")
        timeline = [
            (care, {**order}, config.care_template(inp.category)),
            (config.step("review"), order, None),
            (config.step("one_month_gift"), order, None),
            (config.step("repurchase"), {"order_id": "latest"}, None),
            (config.step("offer"), {"order_id": "latest"}, None),
        ]
        for step, context, template in timeline:
            # Until the step's day, send a shipping notice for each shipment that arrives.
            while True:
                await j.wait_until(
                    j.entered_at + step.after,
                    step=step,
                    wake=lambda: self._exit is not None or bool(self._shipments),
                )
                if self._exit:
                    return j.finish(self._exit)
                if not self._shipments:
                    break
                if ended := await self._shipping_notice(self._shipments.pop(0)):
                    return ended
            if ended := await self._touch(step, context, template=template):
                return ended
        return j.finish("completed")

    async def _shipping_notice(self, shipment: Shipment) -> JourneyResult | None:
        base = self._journey.config.step("shipping")
        step = base.model_copy(update={"name": f"shipping_{shipment.shipment_id}"[:64]})
        context = {"order_id": shipment.order_id, "tracking_url": shipment.tracking_url}
        return await self._touch(step, context)

    async def _touch(
        self, step: StepConfig, context: Mapping[str, str | None], template: str | None = None
    ) -> JourneyResult | None:
        """Send, unless the first week already had its emails (skipped and recorded)."""
        j = self._journey
        config: NurtureConfig = j.config  # type: ignore[assignment]
        first_week_ends = j.entered_at + config.first_week
        if workflow.now() < first_week_ends and j.sent_since(j.entered_at) >= config.first_week_max:
            j.skip(step, f"first_week_limit: {config.first_week_max} emails in {config.first_week}")
            return None
        return await self._send(
            step,
            ordered_outcome="repeat_customer",
            template=template,
            context={"tracking_url": None, **context},
            ignore_order_id=self._first_order,
        )
