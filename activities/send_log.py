"""The send activity's pieces around its send log row: which attempt holds a claim, what a row
found under the key means for this attempt, heartbeats, and writes that outlast a short
database outage. Used by activities/send.py only."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from core.contracts import SendOutcome, SendStepInput
from store.models import Customer, SendLog, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a write that records what the relay answered keeps trying through a database
# outage (within the activity's start-to-close): losing it would turn a known outcome into
# an uncertain one.
RECORD_PATIENCE = timedelta(minutes=5)


def attempt_token() -> str:
    """This attempt of this activity: the owner of a claim it takes."""
    info = activity.info()
    return f"{info.workflow_run_id}/{info.activity_id}/{info.attempt}"


def row_for(
    req: SendStepInput, *, customer_id: str, email: str | None, decision: SendOutcome | None
) -> SendLog:
    """A new send log row under the request's key: decided, or (``decision`` None) to be
    claimed."""
    row = SendLog(
        idempotency_key=req.idempotency_key,
        customer_id=customer_id,
        journey=req.journey,
        workflow_id=req.workflow_id,
        run_chain_id=req.run_chain_id,
        step=req.step,
        template=req.template,
        channel=req.channel,
        status="sending",
        recipient=email,
        decided_at=req.now,
        variant=req.variant,
    )
    if decision is not None:
        decided(row, decision)
    return row


def keep(
    s: AsyncSession,
    req: SendStepInput,
    customer: Customer,
    existing: SendLog | None,
    decision: SendOutcome,
) -> None:
    """Record the gate's "no" under the key; a hold (deferred) is decided again next time."""
    if decision.status == "deferred":
        return
    if existing is None:
        s.add(row_for(req, customer_id=customer.id, email=customer.email, decision=decision))
    else:
        decided(existing, decision)


def decided(row: SendLog, decision: SendOutcome) -> None:
    row.status = decision.status
    row.reason_code, row.reason_detail = decision.code, decision.detail
    row.reason = decision.reason  # what people read (explain); never read back by code


def outcome_of(row: SendLog, *, already_done: bool) -> SendOutcome:
    return SendOutcome(
        status=row.status,
        code=row.reason_code,
        detail=row.reason_detail,
        message_id=row.message_id,
        already_done=already_done,
    )


def settled(row: SendLog, req: SendStepInput) -> SendOutcome | None:
    """What a row found under the key means for this attempt: the send's answer (a retry
    sends nothing), or None when this attempt may claim it. Changes ``row`` in the caller's
    transaction where it decides:

    - ``sending`` of another attempt: that attempt wrote its claim right before its final
      dot and never finished, so the email may be out: it becomes ``uncertain``, unless the
      journey says "resend": then it is claimed again once its lease is over (until then
      the other attempt may still be running, and this one waits).
    - ``uncertain``: the answer, unless "resend" (after the lease).
    - anything else: decided before, the answer as it is.
    """
    resend = req.on_uncertain == "resend"
    if row.status == "sending":
        if resend:
            _after_lease(row)
            return None
        uncertain(row, f"attempt {row.attempt or '?'} claimed it and never finished")
        return outcome_of(row, already_done=False)
    if row.status == "uncertain" and resend:
        _after_lease(row)
        return None
    return outcome_of(row, already_done=True)


def uncertain(row: SendLog, detail: str) -> None:
    """The row becomes ``uncertain`` (its lease stays: the attempt may still be running)."""
    decided(row, SendOutcome(status="uncertain", code="uncertain", detail=detail))
    count_uncertain(row.idempotency_key, detail)


def count_uncertain(key: str, detail: str | None) -> None:
    _meter().create_counter(
        "journeys_send_uncertain", "sends whose final dot went out without a recorded reply"
    ).add(1)
    log.warning("send %s is uncertain (%s): not sent again by default", key, detail)


def _after_lease(row: SendLog) -> None:
    if row.lease_until is not None and row.lease_until > utcnow():
        left = row.lease_until - utcnow()
        raise ApplicationError(
            f"send {row.idempotency_key} is held by attempt {row.attempt} for "
            f"{left.total_seconds():.0f} s more; sent again after that (on_uncertain = resend)",
            type="SendInProgress",
            next_retry_delay=left + timedelta(seconds=1),
            category=ApplicationErrorCategory.BENIGN,
        )


def unknown_customer(customer_id: str) -> ApplicationError:
    return ApplicationError(
        f"unknown customer {customer_id!r}: record it (identify) before starting a journey for it",
        type="UnknownCustomer",
        non_retryable=True,
    )


def log_for(customer_id: str, message: str, *args: Any) -> None:
    """Through the activity logger: every line carries the workflow and the customer."""
    activity.logger.info(message, *args, extra={"customer_id": customer_id})


def record_window(ms: float) -> None:
    """The reply-to-commit window of one send (docs/decisions/0002-send-idempotency.md)."""
    _meter().create_histogram_float(
        "journeys_send_reply_to_commit",
        "time from the relay's 250 to the commit of 'sent'",
        "ms",
    ).record(ms)


async def persist(write: Callable[[], Awaitable[T]]) -> T:
    """Run ``write`` (a transaction), again through a database outage, for as long as
    RECORD_PATIENCE and the activity's start-to-close allow; then the last error."""
    deadline = time.monotonic() + _patience().total_seconds()
    delay = 0.2
    while True:
        try:
            return await write()
        except (SQLAlchemyError, OSError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("recording a send failed (%s); trying again in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _patience() -> timedelta:
    info = activity.info()
    if info.start_to_close_timeout is None:
        return RECORD_PATIENCE
    started = info.started_time if info.started_time.year > 1970 else utcnow()
    left = started + info.start_to_close_timeout - utcnow() - timedelta(seconds=5)
    return max(min(RECORD_PATIENCE, left), timedelta(seconds=1))


@asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """Heartbeat while the block runs, so a killed worker's attempt is retried after the
    heartbeat timeout (and a cancellation reaches the activity)."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        yield
        return

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(timeout.total_seconds() / 3)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


def _meter() -> MetricMeter:
    return activity.metric_meter()
