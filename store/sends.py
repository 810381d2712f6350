"""The send log as a state machine, and the SMTP circuit breaker: the writes of the send path.

A send's row (docs/decisions/0002-send-idempotency.md): written ``sending`` with the
attempt's token right before the final dot (``claim``), then ``sent`` / ``uncertain`` /
``bounced`` / ``failed`` by that attempt only (``finish``), or deleted by it when the relay
refused before taking anything (``release``). Every statement names the attempt, so an
attempt that lost its claim changes nothing. The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from store.models import Customer, SendLog, SmtpBreaker, utcnow

# What the frequency cap counts: emails that went out, may have gone out, or are going out.
GOING_OUT = ("sent", "sending", "uncertain")
# Where a send ends: the attempt holding the claim writes one of these.
ENDS = frozenset({"sent", "uncertain", "bounced", "failed"})


# Built once: the gate asks it twice per send (store/repo.py says why).
_COUNT_SENT_SINCE = select(func.count(SendLog.id)).where(
    SendLog.customer_id == bindparam("customer_id"),
    SendLog.status.in_(GOING_OUT),
    SendLog.decided_at >= bindparam("since"),
    SendLog.run_chain_id != bindparam("other_than_run_chain"),
)


async def count_sent_since(
    session: AsyncSession, *, customer_id: str, since: datetime, other_than_run_chain: str
) -> int:
    """Emails to the customer since ``since`` by runs other than the given one that went out,
    may have (uncertain; a claim never finished is one too) or are going out right now."""
    found = await session.scalar(
        _COUNT_SENT_SINCE,
        {"customer_id": customer_id, "since": since, "other_than_run_chain": other_than_run_chain},
    )
    return int(found or 0)


def take(row: SendLog, *, attempt: str, lease: timedelta) -> None:
    """Make ``row`` (new or found) the claim of ``attempt``: ``sending`` until it ends."""
    now = utcnow()
    row.status, row.attempt = "sending", attempt
    row.reason_code = row.reason_detail = row.reason = None
    row.claimed_at, row.lease_until = now, now + lease


@dataclass(frozen=True)
class Finished:
    customer_id: str
    recipient: str | None
    decided_at: datetime


def _ending(key: str, attempt: str, values: dict[str, Any]) -> Update:
    """The UPDATE that ends ``attempt``'s claim. A claim another attempt found dead and
    called uncertain still ends here (the reply came after all); ``sent`` again by the same
    attempt too (a commit whose answer was lost, recorded once more)."""
    ending = ("sending", "uncertain", "sent") if values["status"] == "sent" else ENDABLE
    return (
        update(SendLog)
        .where(
            SendLog.idempotency_key == key,
            SendLog.attempt == attempt,
            SendLog.status.in_(ending),
        )
        .values(**values, lease_until=None)
        .execution_options(synchronize_session=False)
    )


ENDABLE = ("sending", "uncertain")


def _emailed(customer_id: Any, at: Any) -> Update:
    """The customer's last automation email (the win-back sweep reads it), never backwards."""
    return (
        update(Customer)
        .where(
            Customer.id == customer_id,
            (Customer.last_emailed_at.is_(None)) | (Customer.last_emailed_at < at),
        )
        .values(last_emailed_at=at, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def finish(
    session: AsyncSession,
    *,
    key: str,
    attempt: str,
    status: str,
    code: str | None,
    detail: str | None,
    reason: str | None,
) -> Finished | None:
    """One UPDATE: the claim of ``attempt`` ends as ``status``. None when ``attempt`` does
    not hold it (another attempt took it over)."""
    assert status in ENDS
    values: dict[str, Any] = {
        "status": status,
        "reason_code": code,
        "reason_detail": detail,
        "reason": reason,
    }
    if status == "sent":
        values["sent_at"] = utcnow()
    found = await session.execute(
        _ending(key, attempt, values).returning(
            SendLog.customer_id, SendLog.recipient, SendLog.decided_at
        )
    )
    row = found.one_or_none()
    return Finished(row[0], row[1], row[2]) if row is not None else None


async def note_emailed(session: AsyncSession, *, customer_id: str, at: datetime) -> None:
    await session.execute(_emailed(customer_id, at))


# Records ``sent`` for (key, attempt); False when the attempt no longer holds the claim.
SentRecorder = Callable[[str, str], Awaitable[bool]]


async def sent_recorder(conn: AsyncConnection) -> SentRecorder:
    """What records ``sent`` right after a 250 on a store connection held across the dot
    (outside a transaction): one short transaction on that connection. PostgreSQL records it
    without yielding the event loop instead (store/sent_now.py)."""

    async def record_in_transaction(key: str, attempt: str) -> bool:
        ending = _ending(key, attempt, {"status": "sent", "sent_at": utcnow()})
        async with conn.begin():
            found = await conn.execute(ending.returning(SendLog.customer_id, SendLog.decided_at))
            row = found.first()
            if row is not None:
                await conn.execute(_emailed(row[0], row[1]))
        return row is not None

    return record_in_transaction


async def release(session: AsyncSession, *, key: str, attempt: str) -> bool:
    """The relay took nothing: ``attempt``'s claim goes, so a retry can send."""
    gone = await session.execute(
        delete(SendLog)
        .where(
            SendLog.idempotency_key == key,
            SendLog.attempt == attempt,
            SendLog.status == "sending",
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(gone, "rowcount", 0))


# -- the circuit breaker -------------------------------------------------------------------


async def breaker(session: AsyncSession, *, relay: str) -> SmtpBreaker | None:
    return await session.get(SmtpBreaker, relay, populate_existing=True)


async def paused_relays(session: AsyncSession) -> list[SmtpBreaker]:
    """Breakers that hold sending now (what /healthz reports)."""
    return list(
        await session.scalars(select(SmtpBreaker).where(SmtpBreaker.opened_at.is_not(None)))
    )


@dataclass(frozen=True)
class BreakerChange:
    failures: int
    opened: bool  # sending is paused now (the cool-down starts again with each failure)
    was_open: bool  # it was paused before this failure (a probe's, or one under way)


async def relay_failed(
    session: AsyncSession, *, relay: str, reason: str, threshold: int
) -> BreakerChange:
    """One more relay-side failure in a row; at ``threshold`` sending pauses. A failure while
    paused (the probe's) starts the cool-down again."""
    now = utcnow()
    await session.execute(
        _insert(session)(SmtpBreaker)
        .values(relay=relay, failures=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=[SmtpBreaker.relay])
    )
    row = await session.scalar(
        select(SmtpBreaker)
        .where(SmtpBreaker.relay == relay)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None
    was_open = row.opened_at is not None
    row.failures += 1
    row.updated_at = now
    opened = row.failures >= threshold
    if opened:
        row.opened_at, row.reason, row.probe_until = now, reason, None
    return BreakerChange(failures=row.failures, opened=opened, was_open=was_open)


async def relay_ok(session: AsyncSession, *, relay: str) -> datetime | None:
    """The relay answered: no failures in a row, sending not paused. Returns since when it
    was paused (None: it was not)."""
    was = await session.execute(
        select(SmtpBreaker.opened_at).where(SmtpBreaker.relay == relay).with_for_update()
    )
    opened_at = was.scalar_one_or_none()
    await session.execute(
        update(SmtpBreaker)
        .where(SmtpBreaker.relay == relay)
        .values(failures=0, opened_at=None, reason=None, probe_until=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return opened_at


async def take_probe(
    session: AsyncSession, *, relay: str, cooldown: timedelta, probe_for: timedelta
) -> bool:
    """After the cool-down one attempt at a time is let through as the probe; True if this
    caller is it."""
    now = utcnow()
    taken = await session.execute(
        update(SmtpBreaker)
        .where(
            SmtpBreaker.relay == relay,
            SmtpBreaker.opened_at.is_not(None),
            SmtpBreaker.opened_at <= now - cooldown,
            (SmtpBreaker.probe_until.is_(None)) | (SmtpBreaker.probe_until < now),
        )
        .values(probe_until=now + probe_for)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(taken, "rowcount", 0))


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
