"""Who the customer is: profiles, Segment identify, and signing up (the welcome series)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.contracts import WelcomeInput
from journeys.config import WelcomeConfig
from starter.ingest import opt_in
from starter.ingest.events import CustomerProfile, Identify, SignedUp
from starter.ingest.service import (
    Call,
    EmailRequired,
    EventResult,
    Handled,
    Ingest,
    Took,
    done,
    in_transaction,
    message_id_of,
    record,
    settle,
)
from store import repo
from store.sms import note_phone

IDENTIFY = "Identify"  # an identify call is kept in the event log under this name


async def upsert_profile(
    ingest: Ingest, p: CustomerProfile, *, attributes: dict[str, Any] | None = None
) -> None:
    async def upsert(s: AsyncSession) -> None:
        await repo.upsert_customer(
            s,
            customer_id=p.customer_id,
            email=str(p.email),
            first_name=p.first_name,
            last_name=p.last_name,
            timezone=p.timezone,
            attributes=attributes,
        )

    await in_transaction(ingest.sessions, upsert)


async def identify(ingest: Ingest, e: Identify) -> EventResult:
    """Create or update the profile; traits we do not know become attributes. A new
    customer needs an email address. Traits take effect in the order calls arrive."""

    rows: list[int] = []  # outbox rows of a consent to confirm (double opt-in)

    async def upsert(s: AsyncSession) -> EventResult:
        if not await record(s, IDENTIFY, e):
            return EventResult(recorded=False)
        current = await repo.lock_customer(s, customer_id=e.customer_id)
        email = e.traits.email or (current.email if current else None)
        if email is None:  # raising rolls the recorded event back
            raise EmailRequired(
                f"customer {e.customer_id!r} is new: the first identify needs an email"
            )
        extra = e.traits.model_dump(mode="json", exclude=set(type(e.traits).model_fields))
        await repo.upsert_customer(
            s,
            customer_id=e.customer_id,
            email=str(email),
            first_name=e.traits.first_name,
            last_name=e.traits.last_name,
            timezone=e.traits.timezone,
            attributes={k: v for k, v in extra.items() if v is not None},
        )
        customer = await repo.lock_customer(s, customer_id=e.customer_id)
        assert customer is not None  # upserted above
        note_phone(customer, phone=e.traits.phone, consent=e.traits.sms_consent, at=e.occurred_at)
        if opt_in.gives_consent(extra):
            source_id = message_id_of(IDENTIFY, e)
            waiting = await opt_in.identify_consent(
                ingest, s, e.customer_id, at=e.occurred_at, source_id=source_id
            )
            if waiting is not None:
                rows[:] = waiting
                return EventResult(recorded=True, action="awaiting_confirmation")
        return EventResult(recorded=True, action="recorded")

    result = await in_transaction(ingest.sessions, upsert)
    if rows:  # the confirmation email's start, delivered as a tracked event's work is
        return await settle(ingest, e.customer_id, rows, Handled(result.action))
    return result


async def known_customers(ingest: Ingest, customer_ids: set[str]) -> set[str]:
    async def known(s: AsyncSession) -> set[str]:
        return await repo.existing_customer_ids(s, customer_ids=customer_ids)

    return await in_transaction(ingest.sessions, known)


async def signed_up(call: Call, e: SignedUp) -> Handled:
    """A new account: the welcome series starts, once per customer ever. Its consent is
    recorded; with double opt-in the series waits for the confirmation (opt_in.py)."""
    if await opt_in.consent_given(call, source=opt_in.SIGNED_UP, at=e.occurred_at):
        return done(e, "awaiting_confirmation")
    config = call.config("welcome_series", WelcomeConfig)
    await call.start(WelcomeInput(customer_id=e.customer_id, config=config))
    return done(e, Took("started", "already_welcomed"))
