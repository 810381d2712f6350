"""Orders: every run the customer is in hears of it; the first one starts the nurture;
a shipment reaches the nurture's shipping notice.

An order counts once by its ``order_id``: the same order again (re-delivered with another
message id or none) changes nothing and tells no run, so it can never end a newer cart
recovery as "ordered". An order placed before the cart last changed (it arrived late) does
not close that cart: cart recovery is not told of it.
"""

from __future__ import annotations

from datetime import timedelta

from core.contracts import NurtureInput, OrderSeen, Shipment, StimulationInput
from core.ids import workflow_id
from core.rules import LIFTED_BY_ORDER, main_category
from journeys.config import NurtureConfig, StimulationConfig
from observability import CONVERSION_WINDOW_DAYS, count_conversions
from starter.ingest import lifecycle
from starter.ingest.events import OrderCompleted, OrderShipped
from starter.ingest.runs import live_runs
from starter.ingest.service import SIGNALLED, Call, Handled, done
from store import coupons, mail_figures, orders, repo


async def order_placed(call: Call, e: OrderCompleted) -> Handled:
    lines = [line.line() for line in e.lines]
    cart = await repo.get_cart(call.s, customer_id=e.customer_id)
    closes_cart = cart is None or cart.updated_at <= e.occurred_at
    recorded = await orders.record_order(
        call.s,
        order_id=e.order_id,
        customer_id=e.customer_id,
        total=e.total,
        currency=e.currency,
        lines=lines,
        placed_at=e.occurred_at,
    )
    if not recorded:  # this order was here before
        return Handled("none", e.concerns(), recorded=False)
    if e.coupons:
        await coupons.redeem(
            call.s,
            order_id=e.order_id,
            customer_id=e.customer_id,
            codes=e.coupons,
            discount=e.discount,
            placed_at=e.occurred_at,
        )
    # An order brings a sunset address back: the customer is engaged again.
    await repo.lift_suppression(call.s, email=call.customer.email, reasons=LIFTED_BY_ORDER)
    await call.products_seen(lines, ordered=True)
    within = timedelta(days=CONVERSION_WINDOW_DAYS)  # the app's metrics
    count_conversions(
        call.s,
        await mail_figures.entered_before(
            call.s, customer_id=e.customer_id, placed_at=e.occurred_at, within=within
        ),
    )
    await lifecycle.refresh_stage(call)
    notice = OrderSeen(order_id=e.order_id, skus=[line.sku for line in e.lines])
    runs = live_runs(call.customer)
    if not closes_cart:
        runs.remove(workflow_id("cart_recovery", e.customer_id))
    await call.tell(runs, "order_placed", notice)
    if await orders.count_orders(call.s, customer_id=e.customer_id) == 1:
        await _start_nurture(call, e)
        await _start_stimulation(call, e)
        return done(e, "started", workflow_id=workflow_id("new_customer_nurture", e.customer_id))
    return done(e, SIGNALLED)


async def _start_stimulation(call: Call, e: OrderCompleted) -> None:
    """A first order of at least the journey's amount: monthly rounds until they come back."""
    config = call.config("stimulation", StimulationConfig)
    if e.total >= config.min_first_order:
        await call.start(
            StimulationInput(customer_id=e.customer_id, config=config, order_id=e.order_id)
        )


async def _start_nurture(call: Call, e: OrderCompleted) -> None:
    config = call.config("new_customer_nurture", NurtureConfig)
    category = main_category(line.category for line in e.lines)
    await call.start(
        NurtureInput(
            customer_id=e.customer_id, config=config, order_id=e.order_id, category=category
        )
    )


async def order_shipped(call: Call, e: OrderShipped) -> Handled:
    shipment = Shipment(
        order_id=e.order_id,
        shipment_id=e.shipment,
        tracking_url=str(e.tracking_url) if e.tracking_url else None,
    )
    await call.signal(e.concerns(), "order_shipped", shipment)
    return done(e, SIGNALLED)
