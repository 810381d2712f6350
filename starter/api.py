"""Python API a shop backend calls: record the event, then start or signal journeys.

Each call validates its input once (pydantic; errors name the field) and commits the event
with what it means (cart, order, consent, suppression) and its Temporal work (outbox rows)
in one short transaction: once a call returns, the event is kept, whether Temporal is up or
not (docs/architecture.md decision 10). The work is delivered at once when Temporal takes it
(the result names the outcome: ``started``, ``signalled``...) or later by the relay
(``queued``). The same message id twice is recorded and routed once. Field names are ours
or Segment's (starter/ingest/events.py); which model and handler an event gets is the
table's (starter/ingest/table.py).

The relay's loop (starter/outbox.py) runs as a background task once started: ``await
journeys.start()`` (the HTTP app's lifespan does) delivers what is left in the outbox (from
before a restart, or while Temporal was down), ``await journeys.close()`` stops it; or use
``async with Journeys(...) as journeys:``. Without it, a call still delivers its own work at
once, and what Temporal did not take is left to a started relay (the API's).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, overload

from pydantic import BaseModel
from temporalio.client import Client

from journeys.config import Config, JourneyConfig
from journeys.loader import JourneyLoader
from settings import Settings
from starter.ingest import consent, profiles
from starter.ingest.events import CustomerProfile, Identify
from starter.ingest.runs import Runs
from starter.ingest.service import EventResult, Ingest
from starter.ingest.table import Ready, other, ready
from starter.outbox import Relay
from store.db import SessionFactory

Input = Mapping[str, Any] | BaseModel


class Journeys:
    def __init__(
        self,
        *,
        client: Client,
        sessions: SessionFactory,
        settings: Settings,
        answer_within: float = 5.0,
    ) -> None:
        """``answer_within``: how long a call waits for Temporal to take its work before
        it answers ``queued`` (the relay delivers it later)."""
        runs = Runs(client, task_queue=settings.temporal_task_queue)
        self._ingest = Ingest(
            sessions=sessions,
            runs=runs,
            relay=Relay(
                sessions,
                runs,
                task_queue=settings.temporal_task_queue,
                answer_within=answer_within,
            ),
            configs=JourneyLoader(settings.journeys_dir, speedup=settings.journey_speedup),
            settings=settings,
        )

    async def start(self) -> None:
        """Start delivering work left in the outbox (from before a restart, or refused by
        Temporal when it was down) in the background."""
        self._ingest.relay.start()

    async def close(self) -> None:
        """Stop the relay; what it did not deliver stays in the store for the next one."""
        await self._ingest.relay.close()

    async def __aenter__(self) -> Journeys:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def relay(self) -> Relay:
        return self._ingest.relay

    @property
    def client(self) -> Client:
        return self._ingest.runs.client

    @property
    def sessions(self) -> SessionFactory:
        return self._ingest.sessions

    @property
    def ingest(self) -> Ingest:
        """The service behind this API (the HTTP routes run validated calls on it)."""
        return self._ingest

    @overload
    def config(self, name: str) -> JourneyConfig: ...

    @overload
    def config(self, name: str, model: type[Config]) -> Config: ...

    def config(self, name: str, model: type[JourneyConfig] = JourneyConfig) -> JourneyConfig:
        """The journey's TOML, reloaded when the file changes, with JOURNEY_SPEEDUP applied."""
        return self._ingest.configs.config(name, model)

    async def _run(self, event: Ready) -> EventResult:
        return await event.run(self._ingest)

    async def track(self, name: str, event: Input) -> EventResult:
        """Any event of the table by its Segment name (``track("Signed Up", {...})``); the
        methods below are the same calls by their Python names. Other names: ``other_event``."""
        return await self._run(ready(name, event))

    # -- profiles -------------------------------------------------------------------------

    async def customer_upserted(
        self, profile: Input, *, attributes: dict[str, Any] | None = None
    ) -> None:
        p = CustomerProfile.model_validate(profile)
        await profiles.upsert_profile(self._ingest, p, attributes=attributes)

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
        call: dict[str, Any] = {"customer_id": customer_id, "traits": traits}
        call |= {"message_id": message_id} if message_id else {}
        call |= {"occurred_at": occurred_at} if occurred_at else {}
        return await profiles.identify(self._ingest, Identify.model_validate(call))

    async def known_customers(self, customer_ids: set[str]) -> set[str]:
        return await profiles.known_customers(self._ingest, customer_ids)

    async def signed_up(self, event: Input) -> EventResult:
        """A new account: the welcome series starts, once per customer ever."""
        return await self._run(ready("Signed Up", event))

    # -- cart and orders ------------------------------------------------------------------

    async def cart_updated(self, event: Input) -> EventResult:
        """The whole cart after a change (``lines``; none: emptied)."""
        return await self._run(ready("Checkout Started", event))

    async def product_added(self, event: Input) -> EventResult:
        return await self._run(ready("Product Added", event))

    async def product_removed(self, event: Input) -> EventResult:
        return await self._run(ready("Product Removed", event))

    async def order_placed(self, event: Input) -> EventResult:
        return await self._run(ready("Order Completed", event))

    async def order_shipped(self, event: Input) -> EventResult:
        return await self._run(ready("Order Shipped", event))

    async def product_viewed(self, event: Input) -> EventResult:
        """A view (``product``: the product viewed, or its fields at the top level)."""
        return await self._run(ready("Product Viewed", event))

    # -- leaving the list -----------------------------------------------------------------

    async def unsubscribe(self, event: Input) -> EventResult:
        return await self._run(ready("Unsubscribed", event))

    async def resubscribe(self, event: Input) -> EventResult:
        return await self._run(ready("Subscribed", event))

    async def email_bounced(self, event: Input) -> EventResult:
        return await self._run(ready("Email Bounced", event))

    async def complaint(self, event: Input) -> EventResult:
        return await self._run(ready("Email Marked as Spam", event))

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
        await consent.lift_sunset(self._ingest, customer_id)
        return result

    # -- engagement and everything else ---------------------------------------------------

    async def engaged(self, event: Input) -> EventResult:
        """An open or a click (``kind``), recorded against its send; its run is told. The
        first open and the first click of an email count; repeats are only counted."""
        kind = event.get("kind") if isinstance(event, Mapping) else getattr(event, "kind", None)
        name = "Email Link Clicked" if kind == "clicked" else "Email Opened"
        return await self._run(ready(name, event))

    async def other_event(self, event: Input) -> EventResult:
        """Any other event (``name``, ``properties``): recorded, routed nowhere."""
        return await self._run(other(event))
