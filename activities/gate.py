"""The facts the send gate (core.rules.send_decision) decides on, read from the store: asked
when a send is decided and again when its claim is taken, right before the final dot."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from activities.journey import ordered_since
from activities.send_log import keep, row_for, settled, unknown_customer
from core.contracts import SendOutcome, SendStepInput
from core.rules import Recipient, Touches, cart_state, send_decision
from core.sending import CLAIM_LEASE
from store import decisions, repo, sends
from store import lifecycle as cadence
from store import sms as sms_store
from store.models import Customer, SendLog


async def claim(
    s: AsyncSession,
    req: SendStepInput,
    *,
    recipient: str,
    current: Callable[[Customer], str | None],
    changed: str,
    token: str,
) -> SendOutcome | SendLog:
    """Right before an email's dot or a text's request, in the caller's transaction: the
    customer's row locked, the answer recorded before, else the gate again (a "no" recorded
    unless it is a hold), else the row claimed by ``token`` (a new one added to ``s``).
    ``current(customer)`` must still be ``recipient``; else ``AddressChanged`` saying
    "customer <id>'s <changed>"."""
    customer = await repo.lock_customer(s, customer_id=req.customer_id)
    if customer is None:
        raise unknown_customer(req.customer_id)
    if current(customer) != recipient:
        raise ApplicationError(f"customer {customer.id}'s {changed}", type="AddressChanged")
    existing = await repo.get_send(s, key=req.idempotency_key)
    if existing is not None and (answer := settled(existing, req)) is not None:
        return answer
    decision = await gate(s, req, customer)
    if decision is not None:
        keep(s, req, customer, existing, decision)
        return decision
    row = existing or row_for(req, customer_id=customer.id, email=recipient, decision=None)
    row.recipient = recipient
    sends.take(row, attempt=token, lease=CLAIM_LEASE)
    if existing is None:
        s.add(row)
    return row


async def gate(s: AsyncSession, req: SendStepInput, customer: Customer) -> SendOutcome | None:
    """Why this email must not go out (or not yet), or None: send it."""
    req = with_stage_cap(req, customer.stage)
    decision = send_decision(req, await recipient(s, req, customer))
    if decision is not None and decision.code == "capped" and req.on_cap == "defer":
        return await held_by_cap(s, req, customer, decision)
    if decision is not None and decision.code == "touch_budget" and req.on_cap == "defer":
        return held_by_budget(req, decision)
    return decision


@functools.lru_cache(maxsize=4096)
def email_problem(address: str) -> str | None:
    """Why ``address`` is no address to send to (email_validator's syntax check, RFC 5322 and
    RFC 6531; no DNS), or None. A pure function of the string, so kept for the next send:
    the gate asks it twice per send."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


async def recipient(s: AsyncSession, req: SendStepInput, customer: Customer) -> Recipient:
    problem = email_problem(customer.email)
    cart = await repo.get_cart(s, customer_id=customer.id)
    suppression = await repo.get_suppression(s, email=customer.email)
    pause = await decisions.journey_pause(s, journey=req.journey)
    ordered = req.check_orders and await ordered_since(
        s,
        customer_id=customer.id,
        since=req.entered_at,
        ignore_order_id=req.ignore_order_id,
        skus=req.order_skus,
    )
    recent = 0
    if not req.transactional:  # the cap does not hold transactional mail
        since = req.now - req.frequency_cap.window
        if req.frequency_cap.per_channel:
            recent = await sms_store.count_sent_since(
                s,
                customer_id=customer.id,
                since=since,
                other_than_run_chain=req.run_chain_id,
                channel=req.channel,
            )
        else:  # emails and texts together
            recent = await sends.count_sent_since(
                s, customer_id=customer.id, since=since, other_than_run_chain=req.run_chain_id
            )
    sms_suppression = None
    if req.channel == "sms" and customer.phone:
        sms_suppression = await sms_store.sms_suppression(s, phone=customer.phone)
    return Recipient(
        touches=await touches(s, req, customer),
        email_problem=problem,
        subscribed=customer.subscribed,
        unsubscribed_journeys=customer.attributes.get("unsubscribed_journeys", []),
        suppression=suppression.reason if suppression is not None else None,
        timezone=customer.timezone,
        cart=cart_state(cart.status, cart.lines) if cart is not None else "gone",
        ordered=ordered,
        recent_sends=recent,
        paused=(pause.reason or "") if pause is not None else None,
        phone=customer.phone,
        sms_consent=customer.sms_consent,
        sms_suppression=sms_suppression,
    )


async def touches(s: AsyncSession, req: SendStepInput, customer: Customer) -> Touches | None:
    """The stage's touch budget for this email and what of it was sent since the stage
    began; None where no budget holds (a text, transactional mail, no stage or budget)."""
    budget = req.stage_budgets.get(customer.stage or "")
    if budget is None or req.transactional or req.channel != "email":
        return None
    care = req.journey in req.care_journeys
    sent = await cadence.touches_in_stage(
        s,
        customer_id=customer.id,
        since=customer.stage_since or datetime.min.replace(tzinfo=UTC),
        care_journeys=req.care_journeys,
        care=care,
        other_than_key=req.idempotency_key,
    )
    kind: Literal["care", "marketing"] = "care" if care else "marketing"
    allowed = budget.care if care else budget.marketing
    return Touches(stage=customer.stage or "", kind=kind, budget=allowed, sent=sent)


def held_by_budget(req: SendStepInput, spent: SendOutcome) -> SendOutcome:
    """A send beyond the stage's touch budget, of a step with ``on_cap = "defer"``: held
    and asked again daily (a new stage, by an order or the daily sweep, has a budget of its
    own), at most ``cap_wait`` after the step was due; then skipped, saying so."""
    limit = (req.due_at or req.now) + req.cap_wait
    if req.now >= limit:
        return spent.model_copy(update={"detail": f"{spent.detail}; held {req.cap_wait}"})
    again = min(req.now + BUDGET_RECHECK, limit)
    return SendOutcome(
        status="deferred",
        code="touch_budget",
        detail=f"{spent.detail}; asked again {again:%Y-%m-%d %H:%M} UTC",
        retry_at=again,
    )


def with_stage_cap(req: SendStepInput, stage: str | None) -> SendStepInput:
    """The request with the frequency cap of the customer's lifecycle stage, when
    journeys/lifecycle.toml gives that stage one (``stage_caps``); else as it is."""
    cap = req.stage_caps.get(stage or "")
    return req if cap is None else req.model_copy(update={"frequency_cap": cap})


async def held_by_cap(
    s: AsyncSession, req: SendStepInput, customer: Customer, capped: SendOutcome
) -> SendOutcome:
    """A capped send of a step with ``on_cap = "defer"``: held (``deferred``, code
    ``capped``) until the cap allows it, when that is within ``cap_wait`` of when the step
    was due; else skipped as capped, saying so."""
    cap = req.frequency_cap
    oldest_counted = await cadence.cap_frees_at(
        s,
        customer_id=customer.id,
        since=req.now - cap.window,
        other_than_run_chain=req.run_chain_id,
        max_emails=cap.max_emails,
    )
    # The cap allows it once the max_emails-th most recent counted email leaves the window.
    allowed = (oldest_counted + cap.window if oldest_counted else req.now) + CAP_MARGIN
    limit = (req.due_at or req.now) + req.cap_wait
    if allowed > limit:
        detail = f"{capped.detail}; allowed only at {allowed:%Y-%m-%d %H:%M}, past {req.cap_wait}"
        return capped.model_copy(update={"detail": detail})
    return SendOutcome(
        status="deferred",
        code="capped",
        detail=f"{capped.detail}; held until {allowed:%Y-%m-%d %H:%M} UTC",
        retry_at=allowed,
    )


# Asked again just after the counted email has left the window (``decided_at >= since``).
CAP_MARGIN = timedelta(seconds=1)
# A send held by the touch budget is asked again after this (the stage moves at most daily
# by time; an order moves it at once, and the run asks again at its next recheck).
BUDGET_RECHECK = timedelta(days=1)
