"""Tables. Times are stored as UTC and always come back timezone-aware.

Longer than the ~400-line guide, on purpose: every table, one class each, on the one
metadata the migrations are compared with.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, Decimal: Numeric(12, 2)}


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        # The daily sweep's selections: lapsed buyers and birthdays.
        Index("ix_customers_last_order", "last_order_at"),
        Index("ix_customers_birthday", "birthday_md"),
        Index("ix_customers_stage", "stage"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # Marketing subscription: False after an unsubscribe; consent withdrawn.
    subscribed: Mapped[bool] = mapped_column(default=True)
    # Text messages (docs/decisions/0015-sms.md): the number in E.164, and the SMS consent
    # apart from email's: given or withdrawn, when and how (an identify trait, a START reply).
    phone: Mapped[str | None] = mapped_column(String(16), index=True)
    sms_consent: Mapped[bool] = mapped_column(default=False, server_default="0")
    sms_consent_at: Mapped[datetime | None]
    sms_consent_source: Mapped[str | None] = mapped_column(String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Kept up to date by the writes, so the sweep selects with plain indexed columns.
    order_count: Mapped[int] = mapped_column(default=0, server_default="0")
    last_order_at: Mapped[datetime | None]
    last_emailed_at: Mapped[datetime | None]  # last automation email sent (journey clock)
    birthday_md: Mapped[str | None] = mapped_column(String(5))  # "MM-DD"
    winback_for: Mapped[datetime | None]  # last_order_at of the lapse a win-back began for
    # The lifecycle stage (core/lifecycle.py) and since when we know it; VIP since when.
    # Updated on orders and by the daily sweep; None until first computed.
    stage: Mapped[str | None] = mapped_column(String(32))
    stage_since: Mapped[datetime | None]
    vip_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Event(Base):
    """Every event received, once: ``message_id`` is the sender's id (or the event's own
    identity, e.g. the first open of one email) and is unique; the same one again only
    counts in ``repeats``."""

    __tablename__ = "events"
    # The report finds unsubscribes, complaints and reported bounces among all events.
    __table_args__ = (Index("ix_events_name_occurred", "name", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(100))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime]  # when it happened (the sender's time, skew-corrected)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    repeats: Mapped[int] = mapped_column(default=0, server_default="0")
    # Opens and clicks only (core/engagement.py): "human" or "machine" (a scanner, an image
    # proxy, a prefetch at delivery); the rule that decided (``EngagementReason``) and what
    # it saw. Only human ones count for journeys, sunsets and rates; None: not engagement.
    engagement_class: Mapped[str | None] = mapped_column(String(8))
    engagement_reason: Mapped[str | None] = mapped_column(String(32))
    engagement_detail: Mapped[str | None] = mapped_column(Text)


class Outbox(Base):
    """Work for Temporal that an accepted event carries (start a journey, signal a run),
    committed with the event and delivered after the commit, in order per customer, until
    Temporal takes it (docs/architecture.md decision 10). A delivered row is deleted."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_queue_customer", "task_queue", "customer_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    task_queue: Mapped[str] = mapped_column(String(200))  # the starter's; its relay delivers
    customer_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # start | signal
    workflow_id: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str | None] = mapped_column(String(200))  # the event's message id
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    parked_at: Mapped[datetime | None]  # Temporal refused it for good: skipped, kept to see


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_customer_placed", "customer_id", "placed_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    total: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    lines: Mapped[dict[str, Any]] = mapped_column(default=dict)
    placed_at: Mapped[datetime]


class Cart(Base):
    """The customer's current cart: one row per customer, replaced on every change."""

    __tablename__ = "carts"

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    lines: Mapped[dict[str, Any]] = mapped_column(default=dict)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    checkout_url: Mapped[str | None] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active|emptied|ordered
    # Event times: the last change of any kind, and the last time the cart came whole
    # ("Checkout Started"). A whole cart older than the last change, or a product added or
    # removed before the cart last came whole, changes nothing.
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    replaced_at: Mapped[datetime | None]


class SendLog(Base):
    """One row per send decision: skipped (with reason), held_out, or the send itself as a
    small state machine: ``sending`` (written with the attempt's token right before the final
    dot) -> ``sent`` | ``uncertain`` | ``bounced`` | ``failed``. A send being retried (relay
    down, 4xx) has no row until it ends (docs/decisions/0002-send-idempotency.md)."""

    __tablename__ = "send_log"
    __table_args__ = (
        Index("ix_send_log_customer_decided", "customer_id", "decided_at"),
        Index("ix_send_log_journey_step_variant", "journey", "step", "variant"),
        # The effect report: each customer's first send of each step, in index order.
        Index(
            "ix_send_log_journey_customer_step",
            "journey",
            "customer_id",
            "step",
            "decided_at",
            "id",
            postgresql_include=["status", "reason_code"],
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(400), unique=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    journey: Mapped[str] = mapped_column(String(64))
    workflow_id: Mapped[str] = mapped_column(String(255))
    run_chain_id: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(64))
    template: Mapped[str] = mapped_column(String(100))
    # sending (about to write the final dot) | sent | uncertain | skipped | held_out |
    # bounced | failed
    status: Mapped[str] = mapped_column(String(16))
    # Why it was not sent: a code from core.contracts.ReasonCode and its detail, which code
    # reads; ``reason`` is the two written for people (explain, reports), never parsed.
    reason_code: Mapped[str | None] = mapped_column(String(32))
    reason_detail: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    recipient: Mapped[str | None] = mapped_column(String(320))
    coupon_code: Mapped[str | None] = mapped_column(String(64))
    # The A/B variant of the step that went out (its subject, maybe its template); None:
    # the step has no variants (core.rules.ab_variant, journeys/config.py Variant).
    variant: Mapped[str | None] = mapped_column(String(32))
    decided_at: Mapped[datetime]  # the journey's clock (workflow.now()) at the decision
    claimed_at: Mapped[datetime | None]  # wall clock when the claim was taken (before the dot)
    sent_at: Mapped[datetime | None]  # wall clock when the SMTP server accepted
    # The attempt that holds the claim (workflow run, activity, attempt): only it finishes
    # or releases it; until ``lease_until`` it may still be running.
    attempt: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None]
    # email | sms. For a text, ``recipient`` is the number and ``message_id`` the provider's
    # message id (Twilio's SID); its status callbacks fill in the delivery columns.
    channel: Mapped[str] = mapped_column(String(8), default="email", server_default="email")
    delivery_status: Mapped[str | None] = mapped_column(String(16))  # delivered|undelivered|failed
    delivery_error: Mapped[str | None] = mapped_column(String(16))  # the provider's error code
    delivery_at: Mapped[datetime | None]


class Suppression(Base):
    """Addresses no marketing email may go to: one row per address, showing its strongest
    reason (core.rules.SUPPRESSION_PRECEDENCE); every reason is in ``suppression_reasons``."""

    __tablename__ = "suppressions"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))  # complaint|hard_bounce|...|sunset
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SuppressionReason(Base):
    """One reason an address is suppressed, with its source and time. Lifting a reason (a
    re-subscribe lifts "unsubscribed" and "sunset") leaves the others in force."""

    __tablename__ = "suppression_reasons"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    customer_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SmsSuppression(Base):
    """A number no text may go to, one row per reason (core.sms.SMS_SUPPRESSION_PRECEDENCE):
    a STOP reply, or a provider error that ends the number (invalid, landline, opted out at
    the carrier). Apart from email suppressions: a STOP never touches email, nor the reverse."""

    __tablename__ = "sms_suppressions"

    phone: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str | None] = mapped_column(String(64))  # reply | status_callback | send
    detail: Mapped[str | None] = mapped_column(Text)
    customer_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ShortLink(Base):
    """A tracked link of a text message, behind a short token (``/t/c/<token>``): the token
    is random and names this row, which says whose send it was and where it goes."""

    __tablename__ = "short_links"

    token: Mapped[str] = mapped_column(String(16), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    send_key: Mapped[str] = mapped_column(String(400))
    url: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Coupon(Base):
    __tablename__ = "coupons"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    source_key: Mapped[str] = mapped_column(String(400), unique=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    journey: Mapped[str] = mapped_column(String(64))
    percent_off: Mapped[int]
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CouponRedemption(Base):
    """A code given with an order ("Order Completed"'s ``coupon``): who used it, when (the
    order's time), on which order, with what discount, and what the code was to us:
    ``redeemed`` (the customer's own coupon, in time), ``expired``, ``foreign`` (another
    customer's), ``reused`` (already redeemed on another order) or ``unknown`` (not ours)."""

    __tablename__ = "coupon_redemptions"
    __table_args__ = (
        Index("uq_coupon_redemptions_order_code", "order_id", "code", unique=True),
        Index("ix_coupon_redemptions_code", "code"),
        Index("ix_coupon_redemptions_customer", "customer_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(64))  # as given, trimmed and upper-cased
    order_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str] = mapped_column(String(64))  # who placed the order
    owner_id: Mapped[str | None] = mapped_column(String(64))  # whose coupon it is
    journey: Mapped[str | None] = mapped_column(String(64))  # the journey that gave it
    status: Mapped[str] = mapped_column(String(16))
    discount: Mapped[Decimal | None]  # the order's discount (Segment's ``discount``)
    redeemed_at: Mapped[datetime]  # the order's own time
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class AbWinner(Base):
    """An A/B test of a step that picked its winner ("auto_winner" in the step's TOML):
    from ``decided_at`` on every send of the step gets ``variant``. Once per step."""

    __tablename__ = "ab_winners"

    journey: Mapped[str] = mapped_column(String(64), primary_key=True)
    step: Mapped[str] = mapped_column(String(64), primary_key=True)
    variant: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(16))  # opens | clicks
    p_value: Mapped[float]
    # per variant: {"sends": n, "hits": n} at the decision
    figures: Mapped[dict[str, Any]] = mapped_column(default=dict)
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class Product(Base):
    """Products seen in the shop's events (views, carts, orders): the catalogue the journeys
    pick cross-sells and recommendations from."""

    __tablename__ = "products"
    __table_args__ = (Index("ix_products_category_popularity", "category", "times_ordered"),)

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str | None] = mapped_column(String(100))
    price: Mapped[Decimal | None]
    url: Mapped[str | None] = mapped_column(String(2000))
    image_url: Mapped[str | None] = mapped_column(String(2000))
    times_ordered: Mapped[int] = mapped_column(default=0)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)  # "new arrivals"
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class JourneyDecision(Base):
    """A branch a run took and why, so "why did this customer go that way?" has an answer."""

    __tablename__ = "journey_decisions"
    __table_args__ = (
        Index("uq_journey_decisions_run_name", "workflow_id", "run_chain_id", "name", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    journey: Mapped[str] = mapped_column(String(64))
    workflow_id: Mapped[str] = mapped_column(String(255))
    run_chain_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime]


class JourneyPause(Base):
    """A whole journey paused by an operator: its sends are held (not lost) until resumed."""

    __tablename__ = "journey_pauses"

    journey: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime] = mapped_column(default=utcnow)


class SmtpBreaker(Base):
    """The circuit breaker of one relay, shared by every worker and read by /healthz:
    relay-side failures in a row, and since when sending is paused (and why)."""

    __tablename__ = "smtp_breakers"

    relay: Mapped[str] = mapped_column(String(255), primary_key=True)  # host:port
    failures: Mapped[int] = mapped_column(default=0)  # relay-side failures in a row
    opened_at: Mapped[datetime | None]  # paused since (None: closed, sending)
    reason: Mapped[str | None] = mapped_column(Text)  # the failure that opened it
    probe_until: Mapped[datetime | None]  # an attempt is probing the relay until then
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class JourneyEntry(Base):
    """A run entering its journey, with the group the customer is in (treated or control)
    and the journey's clock at entry: what the effect report counts conversions from."""

    __tablename__ = "journey_entries"
    __table_args__ = (
        Index("uq_journey_entries_run", "workflow_id", "run_chain_id", unique=True),
        Index("ix_journey_entries_journey_entered", "journey", "entered_at"),
        # The effect report: each customer's first entry, in index order.
        Index(
            "ix_journey_entries_journey_customer",
            "journey",
            "customer_id",
            "entered_at",
            "id",
            postgresql_include=["group"],
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    journey: Mapped[str] = mapped_column(String(64))
    workflow_id: Mapped[str] = mapped_column(String(255))
    run_chain_id: Mapped[str] = mapped_column(String(64))
    entered_at: Mapped[datetime]  # the journey's clock (workflow.now()) at entry
    group: Mapped[str] = mapped_column(String(8))  # treated | control
    holdout_share: Mapped[float]
    journey_version: Mapped[int]


class ConsentRecord(Base):
    """An address's consent to marketing email: where it was given (``source``: the signup
    form, an identify call, an event), when, the text agreed to, and, with double opt-in,
    when its confirmation link was pressed and from where (IP address and user agent of that
    request). One row per address; a later consent replaces a pending one, never a
    confirmed one (docs/decisions/0010-double-opt-in.md)."""

    __tablename__ = "consent_records"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)  # lowercased
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)  # the words agreed to, as shown
    given_at: Mapped[datetime]  # when the consent was given (the event's time)
    double_opt_in: Mapped[bool] = mapped_column(default=False)
    confirmed_at: Mapped[datetime | None]  # the confirmation link's button was pressed
    confirm_ip: Mapped[str | None] = mapped_column(String(45))  # IPv4 or IPv6, as seen
    confirm_user_agent: Mapped[str | None] = mapped_column(Text)


class ReportSnapshot(Base):
    """An effect report as computed at ``as_of``, kept so the pages and their JSON answer
    without reading the million rows behind it again (docs/decisions/0023-report-snapshots.md).
    ``key``: what was asked (journey or the overview, windows, since); ``body``: the report's
    JSON as served; ``took_seconds``: how long computing it took."""

    __tablename__ = "report_snapshots"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    as_of: Mapped[datetime]  # the report's clock: every figure is as of this moment
    body: Mapped[str] = mapped_column(Text)
    took_seconds: Mapped[float]
