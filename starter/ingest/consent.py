"""Leaving the list and coming back: unsubscribes, re-subscribes, bounces, complaints.

A suppression is recorded in the event's transaction, so the send gate (which reads the
store) honours it from the commit on, whether Temporal is up or not; every run the customer
is in is told to leave through the outbox. Consent changes take effect in the order they
arrive, not by their event time: an unsubscribe is never dropped as late.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core.contracts import CustomerLeft
from core.ids import workflow_id
from core.rules import LIFTED_BY_CONSENT
from starter.ingest.events import Complaint, EmailBounced, Subscribed, Unsubscribed
from starter.ingest.runs import LIVE_JOURNEYS, live_runs
from starter.ingest.service import (
    SIGNALLED,
    Call,
    Handled,
    Ingest,
    done,
    in_transaction,
    known_customer,
)
from store import events, repo
from store.models import utcnow


async def unsubscribed(call: Call, e: Unsubscribed) -> Handled:
    """From now on no marketing email (or none of one journey) goes to the customer."""
    customer = call.customer
    if e.journey is None:
        customer.subscribed = False
        await repo.suppress(
            call.s,
            email=customer.email,
            customer_id=customer.id,
            reason="unsubscribed",
            source=e.source,
        )
        runs = live_runs(customer)
    else:
        opted_out = set(customer.attributes.get("unsubscribed_journeys", []))
        customer.attributes = {
            **customer.attributes,
            "unsubscribed_journeys": sorted(opted_out | {e.journey}),
        }
        runs = [workflow_id(e.journey, customer.id)] if e.journey in LIVE_JOURNEYS else []
    return await _left(call, runs, "unsubscribed", e)


async def subscribed(call: Call, e: Subscribed) -> Handled:
    customer = call.customer
    customer.subscribed = True
    customer.attributes = {
        k: v for k, v in customer.attributes.items() if k != "unsubscribed_journeys"
    }
    await repo.lift_suppression(call.s, email=customer.email, reasons=LIFTED_BY_CONSENT)
    return done(e, "recorded")


async def email_bounced(call: Call, e: EmailBounced) -> Handled:
    """Hard bounce: suppressed at once. Soft: suppressed after SOFT_BOUNCE_LIMIT in a row."""
    customer = call.customer
    reason = "hard_bounce" if e.hard else None
    if not e.hard:
        soft = int(customer.attributes.get("soft_bounces", 0)) + 1
        customer.attributes = {**customer.attributes, "soft_bounces": soft}
        if soft >= call.ingest.settings.soft_bounce_limit:
            reason = "soft_bounce_limit"
    if reason is None:
        return done(e, "recorded")
    await _suppress(call, reason, e.detail, source="bounce report")
    return await _left(call, live_runs(customer), reason, e)


async def complaint(call: Call, e: Complaint) -> Handled:
    await _suppress(call, "complaint", e.detail, source=e.source or "complaint report")
    return await _left(call, live_runs(call.customer), "complaint", e)


SUNSET_LIFTED = "Sunset Lifted"  # the event log's name of a "keep writing" press


async def lift_sunset(ingest: Ingest, customer_id: str) -> None:
    """ "Keep writing to me": a sunset address comes back (nothing else is lifted). The
    lift is kept in the event log ("Sunset Lifted"): a sign of life, so the next sweep does
    not sunset the address again for the same silence (store/sweep.py)."""

    async def lift(s: AsyncSession) -> None:
        customer = await known_customer(s, customer_id)
        if not await repo.lift_suppression(s, email=customer.email, reasons=("sunset",)):
            return  # not sunset: the press is a click of the run's email, nothing more
        now = utcnow()
        await events.record_event(
            s,
            message_id=f"sunset-lifted:{customer.id}:{now.isoformat()}",
            customer_id=customer.id,
            name=SUNSET_LIFTED,
            properties={},
            occurred_at=now,
        )

    await in_transaction(ingest.sessions, lift)


async def _suppress(call: Call, reason: str, detail: str | None, *, source: str) -> None:
    customer = call.customer
    await repo.suppress(
        call.s,
        email=customer.email,
        customer_id=customer.id,
        reason=reason,
        detail=detail,
        source=source,
    )


async def _left(
    call: Call, runs: list[str], reason: str, e: Unsubscribed | EmailBounced | Complaint
) -> Handled:
    await call.tell(runs, "customer_left", CustomerLeft(reason=reason))
    return done(e, SIGNALLED)
