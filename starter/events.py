"""What a shop sends us, validated. Errors name the field and the reason."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, HttpUrl

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like Europe/Berlin)"
        ) from exc
    return name


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp needs a time zone offset (e.g. 2026-11-22T10:00:00Z)")
    return value.astimezone(UTC)


Timestamp = Annotated[datetime, AfterValidator(_aware)]


def _now() -> datetime:
    return datetime.now(UTC)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    customer_id: Id
    # The sender's id of this event; the same id twice is recorded and routed once.
    message_id: str | None = Field(None, min_length=1, max_length=200)
    occurred_at: Timestamp = Field(default_factory=_now)


class CustomerProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    customer_id: Id
    email: EmailStr
    first_name: str | None = Field(None, max_length=100)
    last_name: str | None = Field(None, max_length=100)
    timezone: Annotated[str, AfterValidator(_zone)] | None = None


class CartLine(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    quantity: int = Field(1, ge=1, le=10_000)
    category: str | None = Field(None, max_length=100)
    url: HttpUrl | None = None
    image_url: HttpUrl | None = None


class CartUpdated(_Event):
    """The customer's whole cart after a change; no lines = the cart was emptied."""

    lines: list[CartLine] = Field(default_factory=list, max_length=500)
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    checkout_url: HttpUrl | None = None


class OrderPlaced(_Event):
    order_id: Id
    total: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    lines: list[CartLine] = Field(default_factory=list, max_length=500)


class ProductChanged(_Event):
    """One product added to or removed from the cart (Segment "Product Added"/"Removed")."""

    line: CartLine


class Unsubscribe(_Event):
    journey: str | None = Field(None, description="only this journey; None = all marketing email")
    source: str = "api"


class Bounce(_Event):
    hard: bool = True
    detail: str | None = None


class Complaint(_Event):
    detail: str | None = None


class EngagementEvent(_Event):
    kind: str = Field(pattern=r"^(opened|clicked)$")
    send_key: str | None = None
    url: str | None = None


class OtherEvent(_Event):
    """Any other event: recorded for later journeys, routed nowhere."""

    name: str = Field(min_length=1, max_length=100)
    properties: dict[str, Any] = Field(default_factory=dict)


class SignedUp(_Event):
    """A new account: starts the welcome series (once per customer ever)."""


class OrderShipped(_Event):
    order_id: Id
    shipment_id: str | None = Field(None, min_length=1, max_length=64)
    tracking_url: HttpUrl | None = None


class ProductViewed(_Event):
    product: CartLine


class Resubscribe(_Event):
    """The customer explicitly asks for marketing email again (lifts unsubscribe and sunset;
    not hard bounces or complaints)."""
