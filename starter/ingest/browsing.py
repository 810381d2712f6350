"""Product views: enough of them for a product not bought start the browse follow-up, and
any view restarts its wait."""

from __future__ import annotations

from datetime import UTC, datetime

from core.contracts import BrowseInput, ProductView
from core.rules import counts_as_order, skus_of
from journeys.config import BrowseConfig
from starter.ingest.events import ProductViewed
from starter.ingest.service import SIGNALLED, Call, Handled, done
from store import events, orders

EVER = datetime.min.replace(tzinfo=UTC)


async def product_viewed(call: Call, e: ProductViewed) -> Handled:
    await call.products_seen([e.line()])
    config = call.config("browse_follow_up", BrowseConfig)
    view = ProductView(sku=e.sku)
    if await _views(call, e) >= config.min_views and not await _bought(call, e.sku):
        inp = BrowseInput(customer_id=e.customer_id, config=config, sku=e.sku)
        await call.start(inp, signal=("product_viewed", view))
        return done(e, "started_or_signalled")
    await call.signal(e.concerns(), "product_viewed", view)
    return done(e, SIGNALLED)


async def _views(call: Call, e: ProductViewed) -> int:
    """Views of this product, or of its category when those are more (this one included)."""
    views = await events.count_views(call.s, customer_id=e.customer_id, sku=e.sku)
    if e.category:
        in_category = await events.count_views(
            call.s, customer_id=e.customer_id, category=e.category
        )
        views = max(views, in_category)
    return views


async def _bought(call: Call, sku: str) -> bool:
    placed = await orders.orders_since(call.s, customer_id=call.customer.id, since=EVER)
    return any(
        counts_as_order(o.id, skus_of(o.lines), ignore_order_id=None, skus=[sku]) for o in placed
    )
