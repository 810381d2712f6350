"""THE table: Segment event name -> (model, handler). HTTP and the Python API both go
through it, so an event is validated once, stored under one name and handled one way.

Adding an event that starts a journey: a model in ``events``, a handler in the module of
its concern, a line here (docs/adding-a-journey.md has an example).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic

from pydantic import BaseModel

from starter.ingest import browsing, carts, consent, engagement, lifecycle, orders, profiles
from starter.ingest.events import (
    CartProduct,
    CartUpdated,
    Complaint,
    EmailBounced,
    EmailLinkClicked,
    EmailOpened,
    Event,
    LifecycleStageChanged,
    OrderCompleted,
    OrderShipped,
    OtherEvent,
    ProductViewed,
    SignedUp,
    Subscribed,
    Unsubscribed,
)
from starter.ingest.service import E, EventResult, Handler, Ingest, handle


@dataclass(frozen=True)
class Route(Generic[E]):
    model: type[E]
    handler: Handler[E]
    stored_as: str | None = None  # the event log's name, when it is not Segment's


EVENTS: dict[str, Route[Any]] = {
    "Signed Up": Route(SignedUp, profiles.signed_up),
    "Checkout Started": Route(CartUpdated, carts.cart_updated, stored_as="Cart Updated"),
    "Product Added": Route(CartProduct, carts.product_added),
    "Product Removed": Route(CartProduct, carts.product_removed),
    "Order Completed": Route(OrderCompleted, orders.order_placed),
    "Order Shipped": Route(OrderShipped, orders.order_shipped),
    "Product Viewed": Route(ProductViewed, browsing.product_viewed),
    "Unsubscribed": Route(Unsubscribed, consent.unsubscribed),
    "Subscribed": Route(Subscribed, consent.subscribed),
    "Email Bounced": Route(EmailBounced, consent.email_bounced),
    "Email Marked as Spam": Route(Complaint, consent.complaint),
    "Email Opened": Route(EmailOpened, engagement.engaged),
    "Email Link Clicked": Route(EmailLinkClicked, engagement.engaged),
    "Lifecycle Stage Changed": Route(LifecycleStageChanged, lifecycle.stage_changed),
}


@dataclass(frozen=True)
class Ready:
    """A validated event, the name it is stored under and its handler."""

    name: str
    event: Event
    handler: Handler[Any]

    @property
    def customer_id(self) -> str:
        return self.event.customer_id

    async def run(self, ingest: Ingest) -> EventResult:
        return await handle(ingest, self.name, self.handler, self.event)


def ready(
    name: str, data: Mapping[str, Any] | BaseModel, *, context: dict[str, Any] | None = None
) -> Ready:
    """Validate an event the table knows by its Segment ``name`` (raises ValidationError
    naming the field); an instance of its model is taken as it is."""
    route = EVENTS.get(name)
    if route is None:
        raise KeyError(f"no event {name!r} in the table (starter/ingest/table.py)")
    event = route.model.model_validate(data, context=context)
    return Ready(route.stored_as or name, event, route.handler)


def other(data: Mapping[str, Any] | BaseModel) -> Ready:
    """Any event the table does not know: recorded under its own name, routed nowhere."""
    event = OtherEvent.model_validate(data)
    return Ready(event.name, event, engagement.recorded_only)
