"""Python API a shop backend calls: record the event, then start or signal journeys.

Each call validates its input (pydantic; errors name the field), records the event in one
transaction and talks to Temporal *before* committing, so a failure leaves nothing behind
and the shop can simply deliver the event again. The same message id twice is recorded and
routed once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.journey import ordered_since
from core.contracts import (
    BrowseInput,
    CartChange,
    CustomerLeft,
    Engagement,
    JourneyInput,
    NurtureInput,
    OrderSeen,
    ProductView,
    Shipment,
    WelcomeInput,
)
from core.ids import win_back_id, workflow_id
from core.starting import start_journey
from journeys.config import (
    BrowseConfig,
    Config,
    JourneyConfig,
    NurtureConfig,
    WelcomeConfig,
    load_journey,
)
from settings import Settings
from starter.events import (
    Bounce,
    CartUpdated,
    Complaint,
    CustomerProfile,
    EngagementEvent,
    OrderPlaced,
    OrderShipped,
    OtherEvent,
    ProductChanged,
    ProductViewed,
    Resubscribe,
    SignedUp,
    Unsubscribe,
)
from store import repo
from store.db import SessionFactory
from store.models import Customer

# Journeys a customer can be in right now; each is told when the customer orders or leaves.
LIVE_JOURNEYS = ("cart_recovery", "welcome_series", "new_customer_nurture", "browse_follow_up")
# (Win-back and birthday runs have ids per lapse / per year; the send gate stops them.)
# Suppressions an explicit re-subscribe lifts (not hard bounces or complaints).
LIFTED_BY_CONSENT = ("unsubscribed", "sunset")
# Journeys that end (or branch) when the customer orders.
ORDER_AWARE = ("cart_recovery", "welcome_series", "new_customer_nurture", "browse_follow_up")


class UnknownCustomer(LookupError):
    """The event names a customer that was never recorded (send the profile first)."""


class EmailRequired(UnknownCustomer):
    """The first identify of a customer carries no email address."""


@dataclass(frozen=True)
class EventResult:
    recorded: bool  # False: a duplicate of an event recorded before; nothing was done
    workflow_id: str | None = None
    action: str = "none"  # started_or_signalled | signalled | recorded | none

    @property
    def duplicate(self) -> bool:
        return not self.recorded


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(value, default=str)))


def win_back_ids(customer: Customer) -> list[str]:
    """The customer's current win-back run, if the sweep started one."""
    return [win_back_id(customer.id, customer.winback_for)] if customer.winback_for else []


def _signalled(sent: bool) -> str:
    return "signalled" if sent else "recorded"


def message_id_of(kind: str, event: BaseModel) -> str:
    """The sender's id, or one derived from the payload: identical payloads count once."""
    given = getattr(event, "message_id", None)
    if given:
        return str(given)
    body = event.model_dump(mode="json", exclude={"message_id"})
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
    return f"{kind}:{digest}"


class Journeys:
    def __init__(self, *, client: Client, sessions: SessionFactory, settings: Settings) -> None:
        self._client = client
        self._sessions = sessions
        self._settings = settings
        self._configs: dict[str, tuple[float, JourneyConfig]] = {}

    @property
    def client(self) -> Client:
        return self._client

    @property
    def sessions(self) -> SessionFactory:
        return self._sessions

    @overload
    def config(self, name: str) -> JourneyConfig: ...

    @overload
    def config(self, name: str, model: type[Config]) -> Config: ...

    def config(self, name: str, model: type[JourneyConfig] = JourneyConfig) -> JourneyConfig:
        """The journey's TOML, reloaded when the file changes, with JOURNEY_SPEEDUP applied."""
        path: Path = self._settings.journeys_dir / f"{name}.toml"
        mtime = path.stat().st_mtime if path.exists() else -1.0
        cached = self._configs.get(name)
        if cached is None or cached[0] != mtime or not isinstance(cached[1], model):
            cached = (mtime, load_journey(name, self._settings.journeys_dir, model))
            self._configs[name] = cached
        config = cached[1].sped_up(self._settings.journey_speedup)
        assert isinstance(config, model)
        return config

    # -- profiles -------------------------------------------------------------------------

    async def customer_upserted(
        self, profile: CustomerProfile | dict[str, Any], *, attributes: dict[str, Any] | None = None
    ) -> None:
        p = CustomerProfile.model_validate(profile)
        async with self._sessions.begin() as s:
            await repo.upsert_customer(
                s,
                customer_id=p.customer_id,
                email=str(p.email),
                first_name=p.first_name,
                last_name=p.last_name,
                timezone=p.timezone,
                attributes=attributes,
            )

    async def identify(
        self,
        *,
        customer_id: str,
        traits: dict[str, Any],
        message_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> EventResult:
        """Segment identify: create or update the profile; unknown traits become attributes.
        A new customer needs an email address."""
        known = {"email", "first_name", "last_name", "timezone"}
        extra = {k: v for k, v in traits.items() if k not in known and v is not None}
        async with self._sessions.begin() as s:
            current = await repo.get_customer(s, customer_id=customer_id)
            email = traits.get("email") or (current.email if current else None)
            if email is None:
                raise EmailRequired(
                    f"customer {customer_id!r} is new: the first identify needs an email"
                )
            profile = CustomerProfile.model_validate(
                {
                    "customer_id": customer_id,
                    "email": email,
                    "first_name": traits.get("first_name"),
                    "last_name": traits.get("last_name"),
                    "timezone": traits.get("timezone"),
                }
            )
            event = OtherEvent(
                customer_id=customer_id,
                message_id=message_id,
                name="Identify",
                properties={k: v for k, v in traits.items() if v is not None},
                **({"occurred_at": occurred_at} if occurred_at else {}),
            )
            fresh = await repo.record_event(
                s,
                message_id=message_id_of("Identify", event),
                customer_id=customer_id,
                name="Identify",
                properties=_jsonable(event.properties),
                occurred_at=event.occurred_at,
            )
            if not fresh:
                return EventResult(recorded=False)
            await repo.upsert_customer(
                s,
                customer_id=customer_id,
                email=str(profile.email),
                first_name=profile.first_name,
                last_name=profile.last_name,
                timezone=profile.timezone,
                attributes=_jsonable(extra),
            )
            return EventResult(recorded=True, action="recorded")

    async def known_customers(self, customer_ids: set[str]) -> set[str]:
        async with self._sessions() as s:
            return await repo.existing_customer_ids(s, customer_ids=customer_ids)

    # -- cart and orders ------------------------------------------------------------------

    async def cart_updated(self, event: CartUpdated | dict[str, Any]) -> EventResult:
        e = CartUpdated.model_validate(event)
        lines = [line.model_dump(mode="json") for line in e.lines]
        properties = {"lines": lines, "currency": e.currency}
        async with self._event(e, "Cart Updated", properties) as s:
            if s is None:
                return EventResult(
                    recorded=False, workflow_id=workflow_id("cart_recovery", e.customer_id)
                )
            checkout_url = str(e.checkout_url) if e.checkout_url else None
            return await self._cart_changed(s, e, lines, e.currency, checkout_url)

    async def product_changed(
        self, event: ProductChanged | dict[str, Any], *, added: bool
    ) -> EventResult:
        """Segment "Product Added" (adds the quantity) / "Product Removed" (drops the line)."""
        e = ProductChanged.model_validate(event)
        name = "Product Added" if added else "Product Removed"
        line = e.line.model_dump(mode="json")
        async with self._event(e, name, {"line": line}) as s:
            if s is None:
                return EventResult(
                    recorded=False, workflow_id=workflow_id("cart_recovery", e.customer_id)
                )
            cart = await repo.get_cart(s, customer_id=e.customer_id)
            current = list(cart.lines.get("items", [])) if cart and cart.status == "active" else []
            lines = [item for item in current if item.get("sku") != line["sku"]]
            if added:
                before = next((i for i in current if i.get("sku") == line["sku"]), None)
                if before is not None:
                    line["quantity"] += int(before.get("quantity", 1))
                lines.append(line)
            currency = cart.currency if cart else "EUR"
            checkout_url = cart.checkout_url if cart else None
            return await self._cart_changed(s, e, lines, currency, checkout_url)

    async def _cart_changed(
        self,
        s: AsyncSession,
        e: Any,
        lines: list[dict[str, Any]],
        currency: str,
        checkout_url: str | None,
    ) -> EventResult:
        wf_id = workflow_id("cart_recovery", e.customer_id)
        await repo.upsert_products(s, lines=lines)
        await repo.set_cart(
            s,
            customer_id=e.customer_id,
            lines=lines,
            currency=currency,
            checkout_url=checkout_url,
            at=e.occurred_at,
        )
        if not lines:
            sent = await self._signal(wf_id, "cart_updated", CartChange(empty=True))
            return EventResult(recorded=True, workflow_id=wf_id, action=_signalled(sent))
        config = self.config("cart_recovery")
        await self._start(
            JourneyInput(customer_id=e.customer_id, config=config),
            signal=("cart_updated", CartChange()),
        )
        return EventResult(recorded=True, workflow_id=wf_id, action="started_or_signalled")

    async def order_placed(self, event: OrderPlaced | dict[str, Any]) -> EventResult:
        e = OrderPlaced.model_validate(event)
        wf_id = workflow_id("cart_recovery", e.customer_id)
        lines = [line.model_dump(mode="json") for line in e.lines]
        properties = {"order_id": e.order_id, "total": str(e.total), "currency": e.currency}
        async with self._event(e, "Order Completed", properties) as s:
            if s is None:
                return EventResult(recorded=False, workflow_id=wf_id)
            await repo.record_order(
                s,
                order_id=e.order_id,
                customer_id=e.customer_id,
                total=e.total,
                currency=e.currency,
                lines=lines,
                placed_at=e.occurred_at,
            )
            await repo.upsert_products(s, lines=lines, ordered=True)
            notice = OrderSeen(order_id=e.order_id, skus=[line["sku"] for line in lines])
            sent = False
            customer = await self._customer(s, e.customer_id)
            for wf in [workflow_id(j, e.customer_id) for j in ORDER_AWARE] + win_back_ids(customer):
                sent |= await self._signal(wf, "order_placed", notice)
            if await repo.count_orders(s, customer_id=e.customer_id) == 1:
                await self._start_nurture(e, lines)
                return EventResult(
                    recorded=True,
                    workflow_id=workflow_id("new_customer_nurture", e.customer_id),
                    action="started",
                )
            return EventResult(recorded=True, workflow_id=wf_id, action=_signalled(sent))

    async def _start_nurture(self, e: OrderPlaced, lines: list[dict[str, Any]]) -> None:
        config = self.config("new_customer_nurture", NurtureConfig)
        categories = [str(line["category"]) for line in lines if line.get("category")]
        category = max(set(categories), key=categories.count) if categories else None
        inp = NurtureInput(
            customer_id=e.customer_id, config=config, order_id=e.order_id, category=category
        )
        await self._start(inp)

    async def signed_up(self, event: SignedUp | dict[str, Any]) -> EventResult:
        """A new account: the welcome series starts, once per customer ever."""
        e = SignedUp.model_validate(event)
        wf_id = workflow_id("welcome_series", e.customer_id)
        async with self._event(e, "Signed Up", {}) as s:
            if s is None:
                return EventResult(recorded=False, workflow_id=wf_id)
            config = self.config("welcome_series", WelcomeConfig)
            started = await self._start(WelcomeInput(customer_id=e.customer_id, config=config))
            action = "started" if started else "already_welcomed"
            return EventResult(recorded=True, workflow_id=wf_id, action=action)

    async def order_shipped(self, event: OrderShipped | dict[str, Any]) -> EventResult:
        e = OrderShipped.model_validate(event)
        wf_id = workflow_id("new_customer_nurture", e.customer_id)
        shipment_id = e.shipment_id or e.order_id
        properties = {"order_id": e.order_id, "shipment_id": shipment_id}
        async with self._event(e, "Order Shipped", properties) as s:
            if s is None:
                return EventResult(recorded=False, workflow_id=wf_id)
            shipment = Shipment(
                order_id=e.order_id,
                shipment_id=shipment_id,
                tracking_url=str(e.tracking_url) if e.tracking_url else None,
            )
            sent = await self._signal(wf_id, "order_shipped", shipment)
            return EventResult(recorded=True, workflow_id=wf_id, action=_signalled(sent))

    async def product_viewed(self, event: ProductViewed | dict[str, Any]) -> EventResult:
        """A view: recorded; enough views of a product not bought start the browse follow-up,
        and any view restarts its wait."""
        e = ProductViewed.model_validate(event)
        wf_id = workflow_id("browse_follow_up", e.customer_id)
        line = e.product.model_dump(mode="json")
        properties = {"sku": line["sku"], "category": line.get("category"), "name": line["name"]}
        async with self._event(e, "Product Viewed", properties) as s:
            if s is None:
                return EventResult(recorded=False, workflow_id=wf_id)
            await repo.upsert_products(s, lines=[line])
            config = self.config("browse_follow_up", BrowseConfig)
            views = await repo.count_views(s, customer_id=e.customer_id, sku=line["sku"])
            if line.get("category"):
                in_category = await repo.count_views(
                    s, customer_id=e.customer_id, category=line["category"]
                )
                views = max(views, in_category)
            bought = await ordered_since(
                s,
                customer_id=e.customer_id,
                since=datetime.min.replace(tzinfo=UTC),
                ignore_order_id=None,
                skus=[line["sku"]],
            )
            view = ProductView(sku=line["sku"])
            if views >= config.min_views and not bought:
                await self._start(
                    BrowseInput(customer_id=e.customer_id, config=config, sku=line["sku"]),
                    signal=("product_viewed", view),
                )
                return EventResult(recorded=True, workflow_id=wf_id, action="started_or_signalled")
            sent = await self._signal(wf_id, "product_viewed", view)
            return EventResult(recorded=True, workflow_id=wf_id, action=_signalled(sent))

    # -- leaving the list -----------------------------------------------------------------

    async def unsubscribe(self, event: Unsubscribe | dict[str, Any]) -> EventResult:
        """From now on no marketing email (or none of one journey) goes to the customer."""
        e = Unsubscribe.model_validate(event)
        properties = {"journey": e.journey, "source": e.source}
        async with self._event(e, "Unsubscribed", properties) as s:
            if s is None:
                return EventResult(recorded=False)
            customer = await self._customer(s, e.customer_id)
            if e.journey is None:
                customer.subscribed = False
                await repo.suppress(
                    s, email=customer.email, customer_id=customer.id, reason="unsubscribed"
                )
                journeys: tuple[str, ...] = LIVE_JOURNEYS
            else:
                opted_out = set(customer.attributes.get("unsubscribed_journeys", []))
                customer.attributes = {
                    **customer.attributes,
                    "unsubscribed_journeys": sorted(opted_out | {e.journey}),
                }
                journeys = (e.journey,) if e.journey in LIVE_JOURNEYS else ()
            sent = await self._leave(customer, "unsubscribed", journeys)
            return EventResult(recorded=True, action=_signalled(sent))

    async def resubscribe(self, event: Resubscribe | dict[str, Any]) -> EventResult:
        e = Resubscribe.model_validate(event)
        async with self._event(e, "Subscribed", {}) as s:
            if s is None:
                return EventResult(recorded=False)
            customer = await self._customer(s, e.customer_id)
            customer.subscribed = True
            customer.attributes = {
                k: v for k, v in customer.attributes.items() if k != "unsubscribed_journeys"
            }
            await repo.lift_suppression(s, email=customer.email, reasons=LIFTED_BY_CONSENT)
            return EventResult(recorded=True, action="recorded")

    async def stay(self, *, customer_id: str, send_key: str) -> EventResult:
        """ "Keep writing to me" from a last call: a click for the journey, and a sunset
        address comes back."""
        result = await self.engaged(
            {
                "customer_id": customer_id,
                "kind": "clicked",
                "send_key": send_key,
                "url": "stay",
                "message_id": f"stay:{send_key}",
            }
        )
        async with self._sessions.begin() as s:
            customer = await self._customer(s, customer_id)
            await repo.lift_suppression(s, email=customer.email, reasons=("sunset",))
        return result

    async def email_bounced(self, event: Bounce | dict[str, Any]) -> EventResult:
        """Hard bounce: suppressed at once. Soft: suppressed after SOFT_BOUNCE_LIMIT in a row."""
        e = Bounce.model_validate(event)
        properties = {"type": "hard" if e.hard else "soft", "detail": e.detail}
        async with self._event(e, "Email Bounced", properties) as s:
            if s is None:
                return EventResult(recorded=False)
            customer = await self._customer(s, e.customer_id)
            reason = "hard_bounce" if e.hard else None
            if not e.hard:
                soft = int(customer.attributes.get("soft_bounces", 0)) + 1
                customer.attributes = {**customer.attributes, "soft_bounces": soft}
                if soft >= self._settings.soft_bounce_limit:
                    reason = "soft_bounce_limit"
            if reason is None:
                return EventResult(recorded=True, action="recorded")
            await repo.suppress(
                s, email=customer.email, customer_id=customer.id, reason=reason, detail=e.detail
            )
            sent = await self._leave(customer, reason, LIVE_JOURNEYS)
            return EventResult(recorded=True, action=_signalled(sent))

    async def complaint(self, event: Complaint | dict[str, Any]) -> EventResult:
        e = Complaint.model_validate(event)
        async with self._event(e, "Email Marked as Spam", {"detail": e.detail}) as s:
            if s is None:
                return EventResult(recorded=False)
            customer = await self._customer(s, e.customer_id)
            await repo.suppress(
                s,
                email=customer.email,
                customer_id=customer.id,
                reason="complaint",
                detail=e.detail,
            )
            sent = await self._leave(customer, "complaint", LIVE_JOURNEYS)
            return EventResult(recorded=True, action=_signalled(sent))

    # -- engagement and everything else ---------------------------------------------------

    async def engaged(self, event: EngagementEvent | dict[str, Any]) -> EventResult:
        """An open or a click, recorded against its send; the send's journey is told."""
        e = EngagementEvent.model_validate(event)
        name = "Email Opened" if e.kind == "opened" else "Email Link Clicked"
        step = e.send_key.rsplit(":", 1)[-1] if e.send_key else None
        wf_id = e.send_key.rsplit(":", 2)[0] if e.send_key and e.send_key.count(":") >= 2 else None
        properties = {"send_key": e.send_key, "step": step, "url": e.url}
        async with self._event(e, name, properties) as s:
            if s is None:
                return EventResult(recorded=False, workflow_id=wf_id)
            customer = await self._customer(s, e.customer_id)
            if customer.attributes.get("soft_bounces"):
                customer.attributes = {**customer.attributes, "soft_bounces": 0}
            sent = False
            if wf_id is not None:
                engagement = Engagement(kind=e.kind, step=step, url=e.url)
                sent = await self._signal(wf_id, "engaged", engagement)
            return EventResult(recorded=True, workflow_id=wf_id, action=_signalled(sent))

    async def other_event(self, event: OtherEvent | dict[str, Any]) -> EventResult:
        e = OtherEvent.model_validate(event)
        async with self._event(e, e.name, e.properties) as s:
            return EventResult(recorded=s is not None, action="recorded")

    # -- mechanics ------------------------------------------------------------------------

    @asynccontextmanager
    async def _event(
        self, e: Any, name: str, properties: dict[str, Any]
    ) -> AsyncIterator[AsyncSession | None]:
        """One transaction: the customer must exist; the event is recorded once (None when
        it was recorded before, so the caller does nothing more)."""
        async with self._sessions.begin() as s:
            await self._customer(s, e.customer_id)
            fresh = await repo.record_event(
                s,
                message_id=message_id_of(name, e),
                customer_id=e.customer_id,
                name=name,
                properties=properties,
                occurred_at=e.occurred_at,
            )
            yield s if fresh else None

    async def _customer(self, s: AsyncSession, customer_id: str) -> Customer:
        customer = await repo.get_customer(s, customer_id=customer_id)
        if customer is None:
            raise UnknownCustomer(
                f"unknown customer {customer_id!r}: send the customer's profile "
                "(identify) before their events"
            )
        return customer

    async def _leave(self, customer: Customer, reason: str, journeys: tuple[str, ...]) -> bool:
        sent = False
        left = CustomerLeft(reason=reason)
        ids = [workflow_id(j, customer.id) for j in journeys]
        if journeys == LIVE_JOURNEYS:
            ids += win_back_ids(customer)
        for wf in ids:
            sent |= await self._signal(wf, "customer_left", left)
        return sent

    async def _start(
        self, inp: JourneyInput, *, signal: tuple[str, BaseModel] | None = None
    ) -> bool:
        return await start_journey(
            self._client, inp, task_queue=self._settings.temporal_task_queue, signal=signal
        )

    async def _signal(self, wf_id: str, signal: Any, arg: Any) -> bool:
        """Signal the live run, if there is one."""
        try:
            await self._client.get_workflow_handle(wf_id).signal(signal, arg)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True
