"""What every handler shares: the service's parts, one call's transaction, the result.

``handle`` is the one path of a tracked event: in one transaction the customer must exist
and the event is recorded once, under the name the table gave it; then its handler runs.
Handlers talk to Temporal *before* the commit, so a failure leaves nothing behind and the
shop can simply deliver the event again. The same message id twice is recorded and routed
once (the duplicate names the run it concerns and does nothing more).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar, overload

from sqlalchemy.ext.asyncio import AsyncSession

from journeys.config import Config, JourneyConfig
from journeys.loader import JourneyLoader
from settings import Settings
from starter.ingest.events import Event
from starter.ingest.runs import Runs
from store import repo
from store.db import SessionFactory
from store.models import Customer


class UnknownCustomer(LookupError):
    """The event names a customer that was never recorded (send the profile first)."""


class EmailRequired(UnknownCustomer):
    """The first identify of a customer carries no email address."""


@dataclass(frozen=True)
class EventResult:
    recorded: bool  # False: a duplicate of an event recorded before; nothing was done
    workflow_id: str | None = None
    action: str = "none"  # started | started_or_signalled | signalled | recorded | none

    @property
    def duplicate(self) -> bool:
        return not self.recorded


@dataclass(frozen=True)
class Ingest:
    """The service's parts, built once per ``Journeys``."""

    sessions: SessionFactory
    runs: Runs
    configs: JourneyLoader
    settings: Settings


@dataclass(frozen=True)
class Call:
    """One event being handled: its open transaction, its customer, the service."""

    s: AsyncSession
    customer: Customer
    ingest: Ingest

    @property
    def runs(self) -> Runs:
        return self.ingest.runs

    @overload
    def config(self, name: str) -> JourneyConfig: ...

    @overload
    def config(self, name: str, model: type[Config]) -> Config: ...

    def config(self, name: str, model: type[JourneyConfig] = JourneyConfig) -> JourneyConfig:
        return self.ingest.configs.config(name, model)


E = TypeVar("E", bound=Event)
Handler = Callable[[Call, E], Awaitable[EventResult]]


def message_id_of(name: str, event: Event) -> str:
    """The sender's id, or one derived from the payload: identical payloads count once."""
    if event.message_id:
        return event.message_id
    body = event.model_dump(mode="json", exclude={"message_id"})
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
    return f"{name}:{digest}"


async def known_customer(s: AsyncSession, customer_id: str) -> Customer:
    customer = await repo.get_customer(s, customer_id=customer_id)
    if customer is None:
        raise UnknownCustomer(
            f"unknown customer {customer_id!r}: send the customer's profile "
            "(identify) before their events"
        )
    return customer


async def record(s: AsyncSession, name: str, e: Event) -> bool:
    """Record the event under ``name``; False when it was recorded before."""
    return await repo.record_event(
        s,
        message_id=message_id_of(name, e),
        customer_id=e.customer_id,
        name=name,
        properties=e.recorded(),
        occurred_at=e.occurred_at,
    )


async def handle(ingest: Ingest, name: str, handler: Handler[E], e: E) -> EventResult:
    """Record ``e`` as ``name`` and run its handler, in one transaction."""
    async with ingest.sessions.begin() as s:
        customer = await known_customer(s, e.customer_id)
        if not await record(s, name, e):
            return EventResult(recorded=False, workflow_id=e.concerns())
        return await handler(Call(s, customer, ingest), e)


def done(e: Event, action: str, *, workflow_id: str | None = None) -> EventResult:
    """A handled event's result; it names the run the event concerns unless told another."""
    return EventResult(recorded=True, workflow_id=workflow_id or e.concerns(), action=action)


def signalled(told: bool) -> str:
    return "signalled" if told else "recorded"
