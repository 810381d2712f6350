"""Consent to marketing email: its record per address, and double opt-in.

Every signup ("Signed Up") records the consent it gives: source, time, and the text agreed
to (CONSENT_TEXT) in ``consent_records``. With DOUBLE_OPT_IN on, the consent is not taken
at its word: the address gets a confirmation email first (workflows/confirm_subscription.py,
transactional) and is suppressed as ``unconfirmed`` meanwhile, so no journey sends it
marketing email; the welcome series is not started. The link's page (GET: a button, so a
link scanner confirms nothing; POST: the button) records when, from which IP address and
with which user agent it was pressed, lifts ``unconfirmed`` and starts the welcome series
then. Why this way: docs/decisions/0010-double-opt-in.md.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from core import tokens
from core.contracts import ConfirmInput, WelcomeInput
from core.ids import workflow_id
from journeys.config import JourneyConfig, WelcomeConfig
from settings import Settings
from starter.ingest.events import Event
from starter.ingest.service import (
    Call,
    EventResult,
    Handled,
    Ingest,
    Took,
    done,
    handle,
)
from store import consent, repo

CONFIRMED = "Subscription Confirmed"  # the event log's name of a confirmation
UNCONFIRMED = "unconfirmed"  # the suppression reason while a confirmation is pending
SIGNED_UP = "Signed Up event"  # the source of a signup's consent
IDENTIFIED = "identify (traits.marketing_consent)"  # the source of an identify's consent
# Identify traits that give consent to marketing email when true.
CONSENT_TRAITS = ("marketing_consent", "marketingConsent")
CONFIRM_PURPOSE = "confirm"
CONFIRM_DAYS = 7  # the confirmation link works this long after it was sent


def confirm_url(settings: Settings, customer_id: str, *, now: float | None = None) -> str:
    """The confirmation link: ``PUBLIC_BASE_URL/confirm/<token>``, signed, for CONFIRM_DAYS."""
    expires_at = (time.time() if now is None else now) + CONFIRM_DAYS * 86400
    token = tokens.sign(
        {"c": customer_id},
        secret=settings.secret_key,
        purpose=CONFIRM_PURPOSE,
        expires_at=expires_at,
    )
    return f"{settings.public_base_url.rstrip('/')}/confirm/{token}"


def read_confirm_token(settings: Settings, token: str) -> tuple[dict[str, Any] | None, bool]:
    """(payload, expired): the payload of a good, unexpired token; else None, and whether it
    was a genuine one whose time is up."""
    payload = tokens.verify(token, secret=settings.secret_key, purpose=CONFIRM_PURPOSE)
    if payload is None:
        return None, False
    if tokens.EXPIRES not in payload or tokens.expired(payload):
        return None, True
    return payload, False


async def consent_given(call: Call, *, source: str, at: datetime) -> bool:
    """The event gave consent to marketing email: record it. True when the marketing it
    would start must wait for the confirmation (DOUBLE_OPT_IN on and the address not
    confirmed yet): then the confirmation email goes out and the address is suppressed as
    ``unconfirmed`` until its link is pressed."""
    settings = call.ingest.settings
    customer = call.customer
    record = await consent.record_consent(
        call.s,
        email=customer.email,
        customer_id=customer.id,
        source=source,
        text=settings.consent_text,
        given_at=at,
        double_opt_in=settings.double_opt_in,
    )
    if not settings.double_opt_in or record.confirmed_at is not None:
        return False
    await repo.suppress(
        call.s,
        email=customer.email,
        customer_id=customer.id,
        reason=UNCONFIRMED,
        detail=f"double opt-in: waiting for the confirmation link (asked {at:%Y-%m-%d})",
        source="double opt-in",
    )
    await call.start(
        ConfirmInput(
            customer_id=customer.id,
            config=call.config("confirm_subscription", JourneyConfig),
            confirm_url=confirm_url(settings, customer.id),
            consent_text=settings.consent_text,
        )
    )
    return True


def gives_consent(traits: Mapping[str, Any]) -> bool:
    """Does an identify's traits give consent to marketing email (``marketingConsent`` or
    ``marketing_consent`` true)?"""
    return any(traits.get(key) is True for key in CONSENT_TRAITS)


async def identify_consent(
    ingest: Ingest, s: AsyncSession, customer_id: str, *, at: datetime, source_id: str
) -> list[int] | None:
    """An identify gave consent (in its transaction ``s``): recorded as ``consent_given``
    does. Returns the outbox rows of the confirmation to deliver after the commit, or None
    when nothing waits (double opt-in off, or the address confirmed before)."""
    customer = await repo.lock_customer(s, customer_id=customer_id)
    if customer is None:  # pragma: no cover - upserted by the identify before
        return None
    call = Call(s, customer, ingest, source_id)
    return call.work if await consent_given(call, source=IDENTIFIED, at=at) else None


class SubscriptionConfirmed(Event):
    """The confirmation link's button was pressed (starter/http/confirm.py): from where."""

    ip: str | None = Field(None, max_length=45)
    user_agent: str | None = Field(None, max_length=2000)


async def confirmed(call: Call, e: SubscriptionConfirmed) -> Handled:
    """Record the confirmation, lift ``unconfirmed``, and start what the signup would have:
    the welcome series (once per customer ever, as always)."""
    customer = call.customer
    record = await consent.confirm_consent(
        call.s, email=customer.email, at=e.occurred_at, ip=e.ip, user_agent=e.user_agent
    )
    if record is None:
        return done(e, "none")  # no consent was asked of this address
    await repo.lift_suppression(call.s, email=customer.email, reasons=(UNCONFIRMED,))
    if record.source != SIGNED_UP:
        return done(e, "recorded")
    welcome = call.config("welcome_series", WelcomeConfig)
    await call.start(WelcomeInput(customer_id=customer.id, config=welcome))
    return done(
        e,
        Took("started", "already_welcomed"),
        workflow_id=workflow_id("welcome_series", customer.id),
    )


async def confirm(
    ingest: Ingest, *, customer_id: str, token: str, ip: str | None, user_agent: str | None
) -> EventResult:
    """The button of the confirmation page: recorded once per link (a second press of the
    same link is a duplicate). Raises ``UnknownCustomer`` for a customer not in the store."""
    event = SubscriptionConfirmed(
        customer_id=customer_id,
        message_id=f"confirmed:{hashlib.sha256(token.encode()).hexdigest()[:40]}",
        ip=ip[:45] if ip else None,  # longer than any address: kept cut, never refused
        user_agent=user_agent[:2000] if user_agent else None,
    )
    return await handle(ingest, CONFIRMED, confirmed, event)
