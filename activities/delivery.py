"""Step 3 of the send activity, delivering: part of :class:`activities.send.SendActivities`.

A ready connection first (no claim is held while waiting for one); MAIL, RCPT, DATA and the
message text; then, right before the final dot, one short transaction: the gate again with
the customer's row locked, and the claim (the row ``sending`` with this attempt's token).
The dot. After the relay's 250 one UPDATE to ``sent``, and nothing else between the reply and
its commit (the reply-to-commit window, measured). What a failure becomes is read from its
kind (docs/decisions/0007-smtp-replies.md): a bad mailbox is ``bounced`` and suppressed, a bad
message ``failed``, a dot without a reply ``uncertain``; every other failure releases the
claim and is retried, and the relay-side ones feed the circuit breaker (activities/breaker.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.breaker import Breaker
from activities.gate import claim
from activities.mailer import SmtpConnection, SmtpFailure, SmtpPool
from activities.pacing import Paced, Pacer
from activities.send_log import (
    attempt_token,
    count_uncertain,
    decided,
    log_for,
    persist,
    record_window,
    row_for,
)
from core.contracts import ReasonCode, SendOutcome, SendStatus, SendStepInput, describe
from core.pacing import engagement_rank
from store import events, repo, sends, sent_now
from store.db import SessionFactory
from store.models import utcnow

# What a failure of each kind ends a send as, when it ends it (the others are retried).
ENDING: dict[str, SendStatus] = {
    "bad_mailbox": "bounced",
    "bad_message": "failed",
    "uncertain": "uncertain",
}
# The reason code of each ending (the detail is the relay's reply or the fault).
SMTP_CODES: dict[str, ReasonCode] = {
    "bounced": "hard_bounce",
    "failed": "rejected",
    "uncertain": "uncertain",
}


@dataclass
class _Held:
    """The store connection held across one send's dot, and what records ``sent`` on it
    (None once used: a second try goes through a fresh connection)."""

    key: str
    conn: AsyncConnection
    record_sent: sends.SentRecorder | None
    record_now: sent_now.Recorder | None = None  # blocking, no await after the 250
    hold: asyncio.TimerHandle | None = None  # SQLite: lets the write lock go if no reply came

    def unreserve(self) -> None:
        """SQLite: the write lock taken before the dot goes (nothing was written with it)."""
        if self.hold is not None:
            self.hold.cancel()
            self.hold = None
        if isinstance(self.record_now, sent_now.SqliteRecorder):
            self.record_now.release()


# The held connection of the send this task is delivering (``_deliver`` sets it; ``_claim``
# and ``_finish`` use it when it is theirs: a subclass may wrap them, their signatures stay).
_HELD: ContextVar[_Held | None] = ContextVar("held_store_connection", default=None)


class _Refused(Exception):
    """The gate said no (or not yet) when the claim was to be taken: no dot."""

    def __init__(self, outcome: SendOutcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


@dataclass
class Attempt:
    """One attempt at delivering one send."""

    req: SendStepInput
    email: str  # the address the message was composed for
    token: str  # attempt_token(): the owner of the claim
    breaker_dirty: bool  # the breaker has failures (or a pause) that a success resets
    claimed: bool = False

    @property
    def key(self) -> str:
        return self.req.idempotency_key


class Delivery:
    """Part of :class:`activities.send.SendActivities`, which sets these attributes."""

    _sessions: SessionFactory
    _readers: SessionFactory  # store.db.readers(_sessions)
    _mailer: SmtpPool
    _breaker: Breaker
    _pool_wait: float
    _sent_now: sent_now.SentNow | sent_now.SentNowSqlite | None  # blocking commit of ``sent``
    _pacer: Pacer | None  # per mailbox provider, the engaged first (None: not paced)

    async def _pace(self, req: SendStepInput, email: str) -> None:
        """Waits for the turn of ``email``'s provider (activities/pacing.py): transactional
        first, then the customers who read the shop's email lately (their last human open
        or click is read only when others wait too). Waiting too long is a benign retry:
        the send is held, not dropped."""
        if self._pacer is None:
            return
        rank = engagement_rank(None, utcnow(), transactional=True) if req.transactional else 0
        if not req.transactional and self._pacer.contended(email):
            async with self._readers() as s:
                last = await events.last_human_engagement(s, customer_id=req.customer_id)
            rank = engagement_rank(last, utcnow())
        try:
            await self._pacer.wait(email, rank=rank)
        except Paced as exc:
            raise ApplicationError(
                f"{exc}; retried",
                type="SendPaced",
                category=ApplicationErrorCategory.BENIGN,
                next_retry_delay=timedelta(seconds=5),
            ) from None

    async def _deliver(
        self, a: Attempt, msg: EmailMessage, message_id: str, coupon_code: str | None
    ) -> SendOutcome:
        dot_at = 0.0

        async def before_dot() -> None:
            nonlocal dot_at
            await self._claim(a, message_id, coupon_code)
            a.claimed = True
            await self._reserve()
            dot_at = time.perf_counter()

        try:
            async with self._connection() as conn, self._held_store(a):
                try:
                    await conn.send(msg, before_dot=before_dot)
                except BaseException as exc:
                    return await self._not_sent(a, conn, exc)
                replied = time.perf_counter()
                # Nothing but this between the 250 and the commit; through a database outage
                # it keeps trying (the relay has the message: losing that would make it
                # uncertain).
                recorded = await persist(lambda: self._finish(a.key, status="sent", reason=None))
                window_ms = (time.perf_counter() - replied) * 1000
            if isinstance(self._sent_now, sent_now.SentNowSqlite):
                self._sent_now.replied(replied - dot_at)
        except SmtpFailure as exc:  # no connection: nothing was sent, nothing claimed
            return await self._failed(a, exc)
        record_window(window_ms)
        log_for(
            a.req.customer_id,
            "sent %s to customer %s (reply-to-commit %.2f ms)",
            a.key,
            a.req.customer_id,
            window_ms,
        )
        if a.breaker_dirty:
            await self._breaker.ok()
        # counted as sent by this attempt only when its claim recorded it (else another
        # attempt's row says what happened, and that attempt counts it)
        return SendOutcome(status="sent", message_id=message_id, already_done=not recorded)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[SmtpConnection]:
        """A ready connection of the pool, waited for at most ``_pool_wait`` seconds."""
        async with AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(self._pool_wait):
                    conn = await stack.enter_async_context(self._mailer.connection())
            except TimeoutError:
                raise ApplicationError(
                    f"no SMTP connection free within {self._pool_wait:.0f} s; retried",
                    type="SmtpBusy",
                    category=ApplicationErrorCategory.BENIGN,
                ) from None
            yield conn

    @asynccontextmanager
    async def _held_store(self, a: Attempt) -> AsyncIterator[_Held]:
        """A store connection held across the dot: the claim is taken on it, and after the
        250 ``sent`` is recorded with what was readied here: a blocking statement on a
        synchronous connection (store/sent_now.py: nothing else of the worker runs between
        the reply and the commit), or, where there is none or it cannot answer at once, one
        short transaction on the held connection."""
        engine = self._sessions.kw["bind"]
        assert isinstance(engine, AsyncEngine)
        async with AsyncExitStack() as stack:
            conn = await stack.enter_async_context(engine.connect())
            held = _Held(key=a.key, conn=conn, record_sent=await sends.sent_recorder(conn))
            if self._sent_now is not None:
                held.record_now = await stack.enter_async_context(self._sent_now.recorder())
            token = _HELD.set(held)
            try:
                yield held
            finally:
                held.unreserve()
                _HELD.reset(token)

    async def _reserve(self) -> None:
        """SQLite, right before the dot: the write lock taken (store/sent_now.py), so that
        the 250's commit waits for no other writer; let go after ``sent_now.HOLD_SECONDS``
        if no reply came. Not taken when the relay answered its recent dots slowly, nor when
        another writer keeps it for ``sent_now.RESERVE_SECONDS``: the reply is then recorded
        the usual way."""
        held = _HELD.get()
        if (
            held is None
            or not isinstance(held.record_now, sent_now.SqliteRecorder)
            or not isinstance(self._sent_now, sent_now.SentNowSqlite)
            or not self._sent_now.reserving()
        ):
            return
        recorder = held.record_now
        deadline = time.monotonic() + sent_now.RESERVE_SECONDS
        while not recorder.reserve():
            if recorder.broken or time.monotonic() > deadline:
                return
            await asyncio.sleep(0.001)  # the lock's holder may be this worker's: the loop runs
        held.hold = asyncio.get_running_loop().call_later(sent_now.HOLD_SECONDS, held.unreserve)

    async def _claim(self, a: Attempt, message_id: str, coupon_code: str | None) -> None:
        """Right before the final dot, one transaction: the gate again with the customer's
        row locked (an unsubscribe, an order or another journey's email committed since the
        decision counts; two journeys pass the cap one after the other), then the row
        ``sending`` with this attempt's token. A "no" is recorded and raised: no dot."""
        held = _HELD.get()
        if held is not None and held.key == a.key:
            async with AsyncSession(bind=held.conn, expire_on_commit=False) as s, s.begin():
                refusal = await self._claim_in(s, a, message_id, coupon_code)
        else:
            async with self._sessions.begin() as s:
                refusal = await self._claim_in(s, a, message_id, coupon_code)
        if refusal is not None:
            log_for(
                a.req.customer_id,
                "send %s %s at the claim: %s",
                a.key,
                refusal.status,
                refusal.reason,
            )
            raise _Refused(refusal)

    async def _claim_in(
        self, s: AsyncSession, a: Attempt, message_id: str, coupon_code: str | None
    ) -> SendOutcome | None:
        claimed = await claim(
            s,
            a.req,
            recipient=a.email,
            current=lambda customer: customer.email,
            changed="address changed since the message was composed",
            token=a.token,
        )
        if isinstance(claimed, SendOutcome):
            return claimed
        claimed.message_id, claimed.coupon_code = message_id, coupon_code
        return None

    async def _finish(self, key: str, *, status: str, reason: str | None) -> bool:
        """The claim of this attempt ends as ``status`` (``sent``; ``bounced``, ``failed``
        or ``uncertain`` with the reply or the fault as ``reason``): one UPDATE naming the
        attempt, plus what ``status`` brings in the same transaction (the customer's last
        email; the bounce's suppression). False when the claim was no longer this attempt's
        (taken over: another attempt's row says what happened)."""
        held = _HELD.get()
        if status == "sent" and held is not None and held.key == key:
            if held.record_now is not None:
                now, held.record_now = held.record_now, None  # this attempt's; then async
                try:
                    recorded = await _record_now(now, key, attempt_token())
                except sent_now.NotRecorded as exc:
                    activity.logger.warning("send %s: recording sent at once failed (%s)", key, exc)
                else:
                    if not recorded:
                        activity.logger.error(
                            "send %s: the claim was taken over before its 250", key
                        )
                    return recorded
            elif held.record_sent is not None:
                record, held.record_sent = held.record_sent, None  # one try; again: a fresh one
                if not await record(key, attempt_token()):
                    activity.logger.error("send %s: the claim was taken over before its 250", key)
                    return False
                return True
        code = SMTP_CODES.get(status)
        async with self._sessions.begin() as s:
            done = await sends.finish(
                s,
                key=key,
                attempt=attempt_token(),
                status=status,
                code=code,
                detail=reason,
                reason=describe(code, reason),
            )
            if done is None:
                activity.logger.error(
                    "send %s: the claim of this attempt was taken over before it ended as %s",
                    key,
                    status,
                )
            elif status == "sent":
                await sends.note_emailed(s, customer_id=done.customer_id, at=done.decided_at)
            elif status == "bounced" and done.recipient:
                await repo.suppress(
                    s,
                    email=done.recipient,
                    customer_id=done.customer_id,
                    reason="hard_bounce",
                    detail=reason,
                )
        return done is not None

    async def _not_sent(self, a: Attempt, conn: SmtpConnection, exc: BaseException) -> SendOutcome:
        """``conn.send`` did not end with a 250."""
        held = _HELD.get()
        if held is not None and held.key == a.key:
            held.unreserve()  # before this path's own writes (a release, a bounce, ...)
        if isinstance(exc, _Refused):  # the gate said no at the claim: no dot was written
            return exc.outcome
        if isinstance(exc, SmtpFailure):
            return await self._failed(a, exc)
        if isinstance(exc, asyncio.CancelledError):
            # Cancelled (the worker shuts down, the run was cancelled): after the dot the
            # relay may have it; before the dot (after the claim) nothing went out.
            await asyncio.shield(self._cancelled(a, dot_written=conn.dot_written))
        raise exc  # the store failed at the claim, ...: no dot; the activity is retried

    async def _cancelled(self, a: Attempt, *, dot_written: bool) -> None:
        if dot_written:
            why = "cancelled after the final dot"
            await persist(lambda: self._finish(a.key, status="uncertain", reason=why))
            count_uncertain(a.key, why)
        elif a.claimed:
            await persist(lambda: self._release(a))

    async def _failed(self, a: Attempt, exc: SmtpFailure) -> SendOutcome:
        """What the failure's kind makes of the send (docs/decisions/0007-smtp-replies.md)."""
        detail = str(exc)
        status = ENDING.get(exc.kind)
        if status is not None:
            outcome = SendOutcome(status=status, code=SMTP_CODES[status], detail=detail)
            if a.claimed:
                await persist(lambda: self._finish(a.key, status=status, reason=detail))
            else:  # refused before the dot: no claim was taken
                await persist(lambda: self._record_unclaimed(a, outcome))
            if status == "uncertain":
                count_uncertain(a.key, detail)
            elif a.breaker_dirty:
                await self._breaker.ok()  # the relay answered as a working relay does
            log_for(a.req.customer_id, "send %s %s: %s", a.key, status, detail)
            return outcome
        # soft, sender_or_relay, unreachable: the relay took nothing; a retry is safe.
        if a.claimed:
            await persist(lambda: self._release(a))
        if exc.relay_side:
            await self._breaker.failed(exc)
        elif a.breaker_dirty:
            await self._breaker.ok()
        log_for(a.req.customer_id, "send %s deferred (%s): sent again later", a.key, exc.reason)
        raise ApplicationError(
            f"SMTP {detail}: deferred, sent again later",
            type="SmtpDeferred",
            category=ApplicationErrorCategory.BENIGN,
        ) from exc

    async def _release(self, a: Attempt) -> None:
        async with self._sessions.begin() as s:
            await sends.release(s, key=a.key, attempt=a.token)

    async def _record_unclaimed(self, a: Attempt, outcome: SendOutcome) -> None:
        """A refusal before the dot that ends the send (a bad mailbox at RCPT, a message the
        relay will never take): recorded, with the bounce's suppression, in one write."""
        async with self._sessions.begin() as s:
            existing = await repo.get_send(s, key=a.key)
            if existing is None:
                s.add(
                    row_for(a.req, customer_id=a.req.customer_id, email=a.email, decision=outcome)
                )
            elif existing.status != "sending":
                decided(existing, outcome)
            if outcome.status == "bounced":
                await repo.suppress(
                    s,
                    email=a.email,
                    customer_id=a.req.customer_id,
                    reason="hard_bounce",
                    detail=outcome.detail,
                )


async def _record_now(now: sent_now.Recorder, key: str, attempt: str) -> bool:
    """``now`` again while SQLite's write lock is held by another of this worker's
    transactions (one the blocked loop would never let finish): the loop runs for a
    millisecond between tries, for at most ``sent_now.BUSY_SECONDS``; then NotRecorded."""
    deadline = time.monotonic() + sent_now.BUSY_SECONDS
    while True:
        try:
            return now(key, attempt)
        except sent_now.Busy:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.001)
