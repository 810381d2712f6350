"""What a shop sends us, one model per event kind, validated once. Errors name the field.

Each model takes the Python API's field names and Segment's
(https://segment.com/docs/connections/spec/ecommerce/v2/): ``lines`` or ``products``,
``total`` or ``revenue``, ``sku`` or ``product_id``... Our own API refuses fields it does not
know, so a typo is an error; Segment's properties carry much we do not use (brand, coupon,
position...), so a call validated with ``context=FROM_SEGMENT`` ignores those.

A model also says what of it the event log keeps (``recorded``) and which journey run it
is about (``concerns``: the workflow id a result names, a duplicate's too).

Longer than the ~400-line guide, on purpose: one small model per event kind on shared field
helpers; a new event is one class here (docs/adding-a-journey.md).
"""

from __future__ import annotations

import hashlib
from contextlib import suppress
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    ValidationInfo,
    model_validator,
)

from core.ids import parse_send_key, stage_change_id, workflow_id
from core.lifecycle import Stage
from core.sms import e164
from core.stage_starts import stage_change_properties

FROM_SEGMENT = {"source": "segment"}  # validation context of a call that came over HTTP

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]


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


def _not_after_now(value: datetime) -> datetime:
    """An event cannot have happened after it arrived: a time ahead of ours (a fast clock)
    is taken as now."""
    return min(value, _now())


Zone = Annotated[str, AfterValidator(_zone)]
# A phone number, stored in E.164 (core.sms.e164: international form, a valid number).
Phone = Annotated[str, Field(max_length=40), AfterValidator(e164)]
Timestamp = Annotated[datetime, AfterValidator(_aware)]
EventTime = Annotated[datetime, AfterValidator(_aware), AfterValidator(_not_after_now)]


def _now() -> datetime:
    return datetime.now(UTC)


def event_time(
    *,
    timestamp: datetime | None,
    original_timestamp: datetime | None = None,
    sent_at: datetime | None = None,
    received_at: datetime | None = None,
    now: datetime | None = None,
) -> datetime:
    """When a Segment call happened, on our clock (docs/architecture.md decision 19).

    A call relayed by Segment carries ``receivedAt``: its ``timestamp`` is corrected for
    clock skew already and is taken as it is. A call straight from a client carries the
    client's clock: its ``timestamp`` (or ``originalTimestamp``) is moved by ``now - sentAt``
    (the client's clock skew plus the time on the way), as Segment computes it. No time is
    later than ``now``; a call with no time happened when it arrived."""
    arrived = now or _now()
    when = timestamp or original_timestamp
    if when is None:
        return arrived
    if received_at is None and sent_at is not None:
        with suppress(OverflowError):  # a clock beyond the calendar: its time as it came
            when = when + (arrived - sent_at)
    return min(when, arrived)


@cache
def _accepted_keys(model: type[BaseModel]) -> tuple[tuple[str, ...], ...]:
    """Per field, the keys it is read from, first choice first."""
    fields = []
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            fields.append(tuple(c for c in alias.choices if isinstance(c, str)))
        else:
            fields.append((alias if isinstance(alias, str) else name,))
    return tuple(fields)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _ignore_what_segment_adds(cls, data: Any, info: ValidationInfo) -> Any:
        """From Segment, keep only the keys a field is read from (the first present one
        where a field has two names: ``sku`` over ``product_id``)."""
        if info.context != FROM_SEGMENT or not isinstance(data, dict):
            return data
        kept: dict[str, Any] = {}
        for keys in _accepted_keys(cls):
            key = next((k for k in keys if k in data), None)
            if key is not None:
                kept[key] = data[key]
        return kept


class Event(_Strict):
    customer_id: Id
    # The sender's id of this event; the same id twice is recorded and routed once.
    message_id: str | None = Field(None, min_length=1, max_length=200)
    # When it happened (default: when it arrived); decisions that depend on order use it.
    occurred_at: EventTime = Field(default_factory=_now)

    def recorded(self) -> dict[str, Any]:
        """What the event log keeps besides customer, message id and time."""
        return self.model_dump(mode="json", exclude={"customer_id", "message_id", "occurred_at"})

    def identity(self) -> str | None:
        """What makes two of these the same event whatever their message ids (None: only
        the message id does)."""
        return None

    def concerns(self) -> str | None:
        """The journey run this event is about (named in the result), if one."""
        return None


ENVELOPE = frozenset(Event.model_fields)


class Line(_Strict):
    """A product in a cart, an order or a view (Segment's product properties)."""

    sku: str = Field(
        min_length=1, max_length=64, validation_alias=AliasChoices("sku", "product_id")
    )
    name: str = Field(min_length=1, max_length=200)
    price: Money
    quantity: int = Field(1, ge=1, le=10_000)
    category: str | None = Field(None, max_length=100)
    url: HttpUrl | None = None
    image_url: HttpUrl | None = None

    def line(self) -> dict[str, Any]:
        """The product as carts, orders and the catalogue keep it."""
        return self.model_dump(mode="json", include=set(Line.model_fields))


Lines = Annotated[
    list[Line],
    Field(default_factory=list, max_length=500, validation_alias=AliasChoices("lines", "products")),
]


# -- profiles --------------------------------------------------------------------------------


class CustomerProfile(_Strict):
    """A customer's profile from the shop's backend (Python API ``customer_upserted``)."""

    customer_id: Id
    email: EmailStr
    first_name: str | None = Field(None, max_length=100)
    last_name: str | None = Field(None, max_length=100)
    timezone: Zone | None = None


class Traits(BaseModel):
    """Segment identify traits: the ones we know are checked, the rest kept as attributes."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    email: EmailStr | None = None
    first_name: str | None = Field(
        None, max_length=100, validation_alias=AliasChoices("firstName", "first_name")
    )
    last_name: str | None = Field(
        None, max_length=100, validation_alias=AliasChoices("lastName", "last_name")
    )
    timezone: Zone | None = None
    # Text messages (docs/decisions/0015-sms.md): the number, and SMS consent given (true)
    # or withdrawn (false), recorded with the call's time; apart from email's.
    phone: Phone | None = None
    sms_consent: bool | None = Field(
        None, validation_alias=AliasChoices("smsConsent", "sms_consent")
    )


class Identify(Event):
    """Segment identify: create or update the profile (a new customer needs an email)."""

    traits: Traits = Field(default_factory=Traits)

    def recorded(self) -> dict[str, Any]:
        return self.traits.model_dump(mode="json", exclude_none=True)


class SignedUp(Event):
    """ "Signed Up": a new account; starts the welcome series (once per customer ever)."""

    def concerns(self) -> str:
        return workflow_id("welcome_series", self.customer_id)


# -- carts and orders ------------------------------------------------------------------------


class CartUpdated(Event):
    """ "Checkout Started" / the Python API's whole cart after a change; no lines = emptied."""

    lines: Lines
    currency: Currency = "EUR"
    checkout_url: HttpUrl | None = None

    def recorded(self) -> dict[str, Any]:
        return {"lines": [line.line() for line in self.lines], "currency": self.currency}

    def concerns(self) -> str:
        return workflow_id("cart_recovery", self.customer_id)


class CartProduct(Line, Event):
    """ "Product Added" / "Product Removed": one product, Segment's properties as they are."""

    def recorded(self) -> dict[str, Any]:
        return {"line": self.line()}

    def concerns(self) -> str:
        return workflow_id("cart_recovery", self.customer_id)


def _codes(value: Any) -> Any:
    """ "A1, B2" -> ["A1", "B2"]; "" or None -> []."""
    if value is None:
        return []
    if isinstance(value, str):
        return [code.strip() for code in value.split(",") if code.strip()]
    return value


Coupons = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]],
    BeforeValidator(_codes),
    Field(max_length=20),
]


class OrderCompleted(Event):
    """ "Order Completed" (Python API ``order_placed``)."""

    order_id: Id
    total: Money = Field(validation_alias=AliasChoices("total", "revenue"))
    currency: Currency = "EUR"
    lines: Lines
    # Segment's ``coupon`` (one code, or several separated by commas) or a list of codes;
    # each is recorded as redeemed, expired, foreign, reused or unknown (store/coupons.py).
    coupons: Coupons = Field(
        default_factory=list, validation_alias=AliasChoices("coupon", "coupons")
    )
    discount: Money | None = None  # the order's discount (Segment's ``discount``)

    def recorded(self) -> dict[str, Any]:
        kept = {"order_id": self.order_id, "total": str(self.total), "currency": self.currency}
        return kept | ({"coupons": self.coupons} if self.coupons else {})

    def concerns(self) -> str:
        return workflow_id("cart_recovery", self.customer_id)


class OrderShipped(Event):
    """ "Order Shipped": nurture's shipping notice goes out."""

    order_id: Id
    shipment_id: str | None = Field(None, min_length=1, max_length=64)
    tracking_url: HttpUrl | None = None

    @property
    def shipment(self) -> str:
        return self.shipment_id or self.order_id

    def recorded(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "shipment_id": self.shipment}

    def concerns(self) -> str:
        return workflow_id("new_customer_nurture", self.customer_id)


class ProductViewed(Line, Event):
    """ "Product Viewed": Segment's properties are the product; the Python API may nest it
    as ``product``."""

    @model_validator(mode="before")
    @classmethod
    def _product_nested(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("product"), dict):
            rest = {k: v for k, v in data.items() if k != "product"}
            return {**data["product"], **rest}
        return data

    def recorded(self) -> dict[str, Any]:
        return {"sku": self.sku, "category": self.category, "name": self.name}

    def concerns(self) -> str:
        return workflow_id("browse_follow_up", self.customer_id)


class LifecycleStageChanged(Event):
    """ "Lifecycle Stage Changed": the customer's stage (core/lifecycle.py) changed; we emit
    it when an order or the daily sweep moves them, and journeys start on it (``[start_on]``,
    core/stage_starts.py). Segment-style properties ``from`` and ``to`` (``previous`` and
    ``stage`` too). Its effect is decided from the stored stage, never from these fields, so
    a call from outside changes nothing by itself."""

    stage: Stage = Field(validation_alias=AliasChoices("to", "stage"))
    previous: str | None = Field(
        None, max_length=32, validation_alias=AliasChoices("from", "previous")
    )
    vip: bool = False
    became_vip: bool = False

    def recorded(self) -> dict[str, Any]:
        return stage_change_properties(self.previous, self.stage, self.vip, self.became_vip)

    def identity(self) -> str:
        return stage_change_id(self.customer_id, self.stage, self.vip, self.occurred_at)


# -- consent and deliverability --------------------------------------------------------------


class Unsubscribed(Event):
    """ "Unsubscribed": no more marketing email, or none of one journey."""

    journey: str | None = Field(None, description="only this journey; None = all marketing email")
    source: str = "api"


class Subscribed(Event):
    """ "Subscribed": the customer explicitly asks for marketing email again (lifts
    unsubscribe and sunset; not hard bounces or complaints)."""


class EmailBounced(Event):
    """ "Email Bounced": hard suppresses at once, soft after SOFT_BOUNCE_LIMIT in a row."""

    bounce_type: Literal["hard", "soft"] = Field(
        "hard", validation_alias=AliasChoices("bounce_type", "type")
    )
    detail: str | None = Field(None, validation_alias=AliasChoices("detail", "reason"))

    @property
    def hard(self) -> bool:
        return self.bounce_type == "hard"

    def recorded(self) -> dict[str, Any]:
        return {"type": self.bounce_type, "detail": self.detail}


class Complaint(Event):
    """ "Email Marked as Spam"."""

    detail: str | None = None
    # Where it came from, kept with the suppression: a provider's feedback loop (the
    # default, "complaint report"), or our "report this email" link ("report link").
    source: str | None = Field(None, max_length=64)


# -- engagement and everything else ----------------------------------------------------------


class EmailEngaged(Event):
    """An open or a click of one of our emails; ``send_key`` names the email (Segment:
    ``email_id``, as our tracking links carry it)."""

    kind: Literal["opened", "clicked"]
    send_key: str | None = Field(None, validation_alias=AliasChoices("send_key", "email_id"))
    url: str | None = Field(None, validation_alias=AliasChoices("url", "link_url"))
    # The fetch of our tracking link (starter/http/tracking.py), classified human or
    # machine by core/engagement.py; None: not a fetch of ours (taken as reported).
    method: str | None = Field(None, max_length=16)
    user_agent: str | None = Field(None, max_length=2000)
    remote_addr: str | None = Field(None, max_length=64)

    def recorded(self) -> dict[str, Any]:
        key = parse_send_key(self.send_key)
        kept = {"send_key": self.send_key, "step": key.step if key else None, "url": self.url}
        return kept | ({"user_agent": self.user_agent[:300]} if self.user_agent else {})

    def identity(self) -> str | None:
        """The first open of one email and the first click of each of its links count;
        repeats (a second look, an image proxy, a forwarded email) are counted on it, not
        recorded or signalled. A machine's is kept apart (starter/ingest/engagement.py)."""
        if not self.send_key:
            return None
        if self.kind == "clicked" and self.url:
            link = hashlib.sha256(self.url.encode()).hexdigest()[:12]
            return f"{self.kind}:{self.send_key}:{link}"
        return f"{self.kind}:{self.send_key}"

    def concerns(self) -> str | None:
        key = parse_send_key(self.send_key)
        return key.workflow_id if key else None


class EmailOpened(EmailEngaged):
    """ "Email Opened"."""

    kind: Literal["opened"] = "opened"


class EmailLinkClicked(EmailEngaged):
    """ "Email Link Clicked"."""

    kind: Literal["clicked"] = "clicked"


class OtherEvent(Event):
    """Any other event: recorded as it is for later journeys, routed nowhere."""

    name: str = Field(min_length=1, max_length=100)
    properties: dict[str, Any] = Field(default_factory=dict)

    def recorded(self) -> dict[str, Any]:
        return dict(self.model_dump(mode="json", include={"properties"})["properties"])
