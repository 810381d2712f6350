"""New-customer nurture: care for a first-time buyer until they order again.

Trigger: the customer's first "Order Completed" (id ``new-customer-nurture:<customer>``, once
per customer). Timeline (journeys/new_customer_nurture.toml), counted from that order:
thank-you + next-order coupon at once; a shipping notice whenever "Order Shipped" arrives;
care content for the order's product category on day 3; care + review request on day 7; a
one-month gift on day 30; a repurchase nudge on day 45; an offer on day 60.
At most ``first_week_max`` emails within ``first_week``, whatever events arrive (the rest are
skipped and recorded). Leaves at once on a second order (signal ``order_placed``, and the send
gate for an order whose signal never came), a hard bounce or a complaint. An unsubscribe (the
signal, or the gate seeing it first) stops the marketing steps only: the run goes on to day 60
for the shipping notices still due (transactional) and ends "unsubscribed".
Signals: ``order_placed``, ``order_shipped``, ``customer_left``, ``engaged``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from temporalio import workflow

from workflows.base import Journey, JourneyEnded

with workflow.unsafe.imports_passed_through():
    from core.contracts import CustomerLeft, JourneyResult, NurtureInput, OrderSeen, Shipment
    from journeys.config import StepConfig

STEP_NAME_MAX = 64  # the send log's step column: every send key's step fits in it
# Behind these, code version 2: an unsubscribe keeps the shipping notices; a shipment id too
# long for a step name gets a hash of the whole id (version 1 cut it: ids sharing a prefix
# got one notice).
KEEPS_TRANSACTIONAL = "nurture-unsubscribe-keeps-shipping-notices"
HASHED_SHIPPING_STEPS = "nurture-shipping-step-names-hashed"


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
        self._marketing_stopped = False  # unsubscribed: transactional steps only

    @workflow.signal
    def customer_left(self, left: CustomerLeft) -> None:
        if left.reason == "unsubscribed" and workflow.patched(KEEPS_TRANSACTIONAL):
            self._marketing_stopped = True
        else:
            super().customer_left(left)

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
        return "unsubscribed" if self._marketing_stopped else "completed"

    async def _shipping_notice(self, shipment: Shipment) -> None:
        base = self._nurture.step("shipping")
        step = base.model_copy(update={"name": _shipping_step(shipment.shipment_id)})
        context = {"order_id": shipment.order_id, "tracking_url": shipment.tracking_url}
        await self._touch(step, context)

    async def _touch(
        self, step: StepConfig, context: Mapping[str, str | None], template: str | None = None
    ) -> None:
        """Send, unless the first week already had its emails, or the customer unsubscribed
        and the step is marketing (skipped and recorded)."""
        if self._marketing_stopped and not step.transactional:
            await self._stop_marketing()
            self.skip(step, "unsubscribed", "transactional mail only")
            return
        limit, week = self._nurture.first_week_max, self._nurture.first_week
        if workflow.now() < self.entered_at + week and self.sent_since(self.entered_at) >= limit:
            self.skip(step, "first_week_limit", f"{limit} emails in {week}")
            return
        try:
            await self.send(
                step,
                template=template,
                context={"tracking_url": None, **context},
                ignore_order_id=self._first_order,
            )
        except JourneyEnded as ended:
            # The gate saw the unsubscribe before its signal came (the skip is recorded).
            unsubscribed = ended.outcome == "unsubscribed" and self._exit is None
            if not (unsubscribed and workflow.patched(KEEPS_TRANSACTIONAL)):
                raise
            self._marketing_stopped = True
            await self._stop_marketing()

    async def _stop_marketing(self) -> None:
        """Recorded once (explain shows it): from here on, transactional steps only."""
        if self.branch("marketing") is None:
            await self.decide("marketing", "stopped", "unsubscribed: transactional mail only")


def _shipping_step(shipment_id: str) -> str:
    """The shipping notice's step name: ``shipping_<shipment id>``; a name too long for a
    step (or with a colon, which send keys reserve) keeps its start and gets a hash of the
    whole id, so two ids sharing a long prefix never share a notice."""
    name = f"shipping_{shipment_id}"
    if len(name) <= STEP_NAME_MAX and ":" not in name:
        return name
    if not workflow.patched(HASHED_SHIPPING_STEPS):
        return name[:STEP_NAME_MAX]
    digest = hashlib.sha256(shipment_id.encode()).hexdigest()[:16]
    return f"{name[: STEP_NAME_MAX - len(digest) - 1].replace(':', '_')}-{digest}"
