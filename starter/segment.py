"""Segment-compatible request bodies (https://segment.com/docs/connections/spec/).

The envelope fields we do not use (context, integrations, anonymousId, sentAt, ...) are
accepted and ignored, so a shop already emitting Segment events can point them here as they
are. What we do use is validated, and errors name the field.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, EmailStr, Field, HttpUrl

from starter.events import Id, Timestamp

_LOOSE = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=True)


class Traits(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, str_strip_whitespace=True)

    email: EmailStr | None = None
    first_name: str | None = Field(
        None, max_length=100, validation_alias=AliasChoices("firstName", "first_name")
    )
    last_name: str | None = Field(
        None, max_length=100, validation_alias=AliasChoices("lastName", "last_name")
    )
    timezone: str | None = None


class _Call(BaseModel):
    model_config = _LOOSE

    user_id: Id = Field(validation_alias=AliasChoices("userId", "user_id"))
    message_id: str | None = Field(
        None, min_length=1, max_length=200, validation_alias=AliasChoices("messageId", "message_id")
    )
    timestamp: Timestamp | None = None

    def envelope(self) -> dict[str, Any]:
        out: dict[str, Any] = {"customer_id": self.user_id, "message_id": self.message_id}
        if self.timestamp is not None:
            out["occurred_at"] = self.timestamp
        return out


class IdentifyCall(_Call):
    type: Literal["identify"] = "identify"
    traits: Traits = Traits()


class TrackCall(_Call):
    type: Literal["track"] = "track"
    event: str = Field(min_length=1, max_length=100)
    properties: dict[str, Any] = Field(default_factory=dict)


Call = Annotated[IdentifyCall | TrackCall, Field(discriminator="type")]


class BatchCall(BaseModel):
    model_config = _LOOSE

    batch: list[Call] = Field(min_length=1)


# -- properties of the events that route somewhere -----------------------------------------


class Product(BaseModel):
    model_config = _LOOSE

    sku: str = Field(
        min_length=1, max_length=64, validation_alias=AliasChoices("sku", "product_id")
    )
    name: str = Field(min_length=1, max_length=200)
    price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    quantity: int = Field(1, ge=1, le=10_000)
    category: str | None = Field(None, max_length=100)
    url: HttpUrl | None = None
    image_url: HttpUrl | None = None

    def line(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class CheckoutStarted(BaseModel):
    model_config = _LOOSE

    products: list[Product] = Field(default_factory=list, max_length=500)
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    checkout_url: HttpUrl | None = None


class OrderCompleted(BaseModel):
    model_config = _LOOSE

    order_id: Id
    total: Decimal = Field(
        ge=0, max_digits=12, decimal_places=2, validation_alias=AliasChoices("total", "revenue")
    )
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    products: list[Product] = Field(default_factory=list, max_length=500)


class EmailBounced(BaseModel):
    model_config = _LOOSE

    bounce_type: Literal["hard", "soft"] = Field(
        "hard", validation_alias=AliasChoices("bounce_type", "type")
    )
    reason: str | None = None


class Unsubscribed(BaseModel):
    model_config = _LOOSE

    journey: str | None = None


class EmailEngagement(BaseModel):
    model_config = _LOOSE

    email_id: str | None = None  # our send key when it came from our tracking links
    link_url: str | None = None


__all__ = ["BatchCall", "Call", "IdentifyCall", "TrackCall"]


class OrderShipped(BaseModel):
    model_config = _LOOSE

    order_id: Id
    shipment_id: str | None = Field(None, min_length=1, max_length=64)
    tracking_url: HttpUrl | None = None
