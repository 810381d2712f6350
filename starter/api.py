"""Python API a shop backend calls: record the event, then start or signal journeys.

Each call validates its input (pydantic; errors name the field), records the event in one
transaction and talks to Temporal *before* committing, so a failure leaves nothing behind
and the shop can simply deliver the event again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from journeys.config import JourneyConfig, load_journey
from settings import Settings
from starter.events import CartUpdated, CustomerProfile, OrderPlaced
from store import repo
from store.db import SessionFactory
from workflows.cart_recovery import CartChange, CartRecovery, OrderNotice
from workflows.common import CUSTOMER_ID, JOURNEY, JourneyInput


class UnknownCustomer(LookupError):
    """The event names a customer that was never recorded (send the profile first)."""


@dataclass(frozen=True)
class EventResult:
    recorded: bool  # False: a duplicate of an event recorded before; nothing was done
    workflow_id: str | None = None
    action: str = "none"  # started_or_signalled | signalled | none

    @property
    def duplicate(self) -> bool:
        return not self.recorded


def workflow_id(journey: str, customer_id: str) -> str:
    return f"{journey.replace('_', '-')}:{customer_id}"


def _message_id(kind: str, event: Any) -> str:
    """Without a sender's id, identical payloads count as one delivery."""
    if event.message_id:
        return str(event.message_id)
    body = event.model_dump(mode="json", exclude={"message_id", "occurred_at"})
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
    return f"{kind}:{digest}:{event.occurred_at.isoformat()}"


class Journeys:
    def __init__(self, *, client: Client, sessions: SessionFactory, settings: Settings) -> None:
        self._client = client
        self._sessions = sessions
        self._settings = settings
        self._configs: dict[str, tuple[float, JourneyConfig]] = {}

    def config(self, name: str) -> JourneyConfig:
        """The journey's TOML, reloaded when the file changes, with JOURNEY_SPEEDUP applied."""
        path: Path = self._settings.journeys_dir / f"{name}.toml"
        mtime = path.stat().st_mtime if path.exists() else -1.0
        cached = self._configs.get(name)
        if cached is None or cached[0] != mtime:
            cached = (mtime, load_journey(name, self._settings.journeys_dir))
            self._configs[name] = cached
        return cached[1].sped_up(self._settings.journey_speedup)

    async def customer_upserted(self, profile: CustomerProfile | dict[str, Any]) -> None:
        p = CustomerProfile.model_validate(profile)
        async with self._sessions.begin() as s:
            await repo.upsert_customer(
                s,
                customer_id=p.customer_id,
                email=str(p.email),
                first_name=p.first_name,
                last_name=p.last_name,
                timezone=p.timezone,
            )

    async def cart_updated(self, event: CartUpdated | dict[str, Any]) -> EventResult:
        e = CartUpdated.model_validate(event)
        wf_id = workflow_id("cart_recovery", e.customer_id)
        async with self._sessions.begin() as s:
            await self._require_customer(s, e.customer_id)
            lines = [line.model_dump(mode="json") for line in e.lines]
            if not await repo.record_event(
                s,
                message_id=_message_id("cart", e),
                customer_id=e.customer_id,
                name="Cart Updated",
                properties={"lines": lines, "currency": e.currency},
                occurred_at=e.occurred_at,
            ):
                return EventResult(recorded=False, workflow_id=wf_id)
            await repo.set_cart(
                s,
                customer_id=e.customer_id,
                lines=lines,
                currency=e.currency,
                checkout_url=str(e.checkout_url) if e.checkout_url else None,
                at=e.occurred_at,
            )
            if not e.lines:
                sent = await self._signal(wf_id, CartRecovery.cart_updated, CartChange(empty=True))
                return EventResult(
                    recorded=True, workflow_id=wf_id, action="signalled" if sent else "none"
                )
            config = self.config("cart_recovery")
            await self._client.start_workflow(
                CartRecovery.run,
                JourneyInput(customer_id=e.customer_id, config=config),
                id=wf_id,
                task_queue=self._settings.temporal_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                start_signal="cart_updated",
                start_signal_args=[CartChange()],
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(CUSTOMER_ID, e.customer_id),
                        SearchAttributePair(JOURNEY, config.name),
                    ]
                ),
                memo={"journey_version": config.version},
                static_summary=f"Cart recovery for customer {e.customer_id}",
            )
            return EventResult(recorded=True, workflow_id=wf_id, action="started_or_signalled")

    async def order_placed(self, event: OrderPlaced | dict[str, Any]) -> EventResult:
        e = OrderPlaced.model_validate(event)
        wf_id = workflow_id("cart_recovery", e.customer_id)
        async with self._sessions.begin() as s:
            await self._require_customer(s, e.customer_id)
            lines = [line.model_dump(mode="json") for line in e.lines]
            if not await repo.record_event(
                s,
                message_id=_message_id("order", e),
                customer_id=e.customer_id,
                name="Order Completed",
                properties={"order_id": e.order_id, "total": str(e.total), "currency": e.currency},
                occurred_at=e.occurred_at,
            ):
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
            sent = await self._signal(
                wf_id, CartRecovery.order_placed, OrderNotice(order_id=e.order_id)
            )
            return EventResult(
                recorded=True, workflow_id=wf_id, action="signalled" if sent else "none"
            )

    async def _require_customer(self, s: Any, customer_id: str) -> None:
        if await repo.get_customer(s, customer_id=customer_id) is None:
            raise UnknownCustomer(
                f"unknown customer {customer_id!r}: send the customer's profile "
                "(customer_upserted / identify) before their events"
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
