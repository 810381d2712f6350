"""Orders: every run the customer is in hears of it; the first one starts the nurture;
a shipment reaches the nurture's shipping notice."""

from __future__ import annotations

from core.contracts import NurtureInput, OrderSeen, Shipment
from core.ids import workflow_id
from core.rules import LIFTED_BY_ORDER, main_category
from journeys.config import NurtureConfig
from starter.ingest.events import OrderCompleted, OrderShipped
from starter.ingest.runs import live_runs
from starter.ingest.service import Call, EventResult, done, signalled
from store import repo


async def order_placed(call: Call, e: OrderCompleted) -> EventResult:
    lines = [line.line() for line in e.lines]
    recorded = await repo.record_order(
        call.s,
        order_id=e.order_id,
        customer_id=e.customer_id,
        total=e.total,
        currency=e.currency,
        lines=lines,
        placed_at=e.occurred_at,
    )
    if recorded:  # an order brings a sunset address back: the customer is engaged again
        await repo.lift_suppression(call.s, email=call.customer.email, reasons=LIFTED_BY_ORDER)
    await repo.upsert_products(call.s, lines=lines, ordered=True)
    notice = OrderSeen(order_id=e.order_id, skus=[line.sku for line in e.lines])
    told = await call.runs.tell(live_runs(call.customer), "order_placed", notice)
    if await repo.count_orders(call.s, customer_id=e.customer_id) == 1:
        await _start_nurture(call, e)
        return done(e, "started", workflow_id=workflow_id("new_customer_nurture", e.customer_id))
    return done(e, signalled(told))


async def _start_nurture(call: Call, e: OrderCompleted) -> None:
    config = call.config("new_customer_nurture", NurtureConfig)
    category = main_category(line.category for line in e.lines)
    await call.runs.start(
        NurtureInput(
            customer_id=e.customer_id, config=config, order_id=e.order_id, category=category
        )
    )


async def order_shipped(call: Call, e: OrderShipped) -> EventResult:
    shipment = Shipment(
        order_id=e.order_id,
        shipment_id=e.shipment,
        tracking_url=str(e.tracking_url) if e.tracking_url else None,
    )
    told = await call.runs.signal(e.concerns(), "order_shipped", shipment)
    return done(e, signalled(told))
