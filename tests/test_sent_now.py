"""The commit of ``sent`` right after a 250 (store/sent_now.py): one blocking statement
(PostgreSQL: prepared; SQLite: one short transaction), nothing of the worker running between
the reply and the commit, and a fallback to the asynchronous path whenever it cannot answer
at once (its connection gone, a lock held by another of the worker's own transactions, a
store that stopped answering).

Against a real PostgreSQL, a real SQLite file and a real SMTP server (testkit.relay)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from activities.delivery import Attempt
from activities.send import SendActivities
from core.contracts import SendOutcome, SendStepInput
from store import sent_now
from store.db import SessionFactory, make_engine, make_session_factory
from store.models import Customer, SendLog
from testkit.relay import Relay
from testkit.waiting import eventually
from tests.test_send_states import activities, attempt, customer, relay, request, row


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[SessionFactory]:
    engine = make_engine(postgres_url)
    yield make_session_factory(engine)
    await engine.dispose()


__all__ = ["relay"]  # the fixture, shared with tests/test_send_states.py


async def sent_now_backends(sessions: SessionFactory) -> int:
    async with sessions() as s:
        found = await s.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'journeys-sent-now' AND datname = current_database()"
            )
        )
    return int(found or 0)


async def test_sent_is_committed_by_the_blocking_statement_with_the_customers_last_email(
    sessions, relay
):
    send, pool = activities(sessions, relay)
    cid = await customer(sessions)
    req = request(cid)
    try:
        outcome = await attempt(1).run(send.send_step, req)
    finally:
        await pool.close()
    assert outcome.status == "sent"
    assert send._sent_now is not None
    assert len(send._sent_now._idle) == 1  # readied before the dot, used, kept for the next
    found = await row(sessions, req)
    assert found is not None and found.status == "sent" and found.sent_at is not None
    async with sessions() as s:
        last = await s.scalar(select(Customer.last_emailed_at).where(Customer.id == cid))
    assert last is not None and last == found.decided_at
    assert list(relay.delivered().values()) == [1]


class LockedMeanwhile(SendActivities):
    """Another transaction holds a lock (``lock``) from the claim until a moment after the
    250, as another of the worker's own transactions would while it waits for the event loop."""

    released: asyncio.Task[None] | None = None

    async def lock(self, s: AsyncSession, a: Attempt) -> None:
        raise NotImplementedError

    async def _claim(self, a: Attempt, message_id: str, coupon_code: str | None) -> None:
        await super()._claim(a, message_id, coupon_code)
        locked = asyncio.Event()

        async def hold() -> None:
            async with self._sessions.begin() as s:
                await self.lock(s, a)
                locked.set()
                await asyncio.sleep(0.5)  # needs the event loop to end: a blocked loop never would

        type(self).released = asyncio.create_task(hold())
        await locked.wait()


class WriteLockedMeanwhile(LockedMeanwhile):
    """SQLite's write lock."""

    async def lock(self, s: AsyncSession, a: Attempt) -> None:
        await s.execute(text("UPDATE smtp_breakers SET failures = failures"))
        await s.execute(text("CREATE TABLE IF NOT EXISTS lock_holder (x INTEGER)"))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("busy_seconds", [2.0, 0.05])
async def test_on_sqlite_a_held_write_lock_is_waited_for_with_the_loop_running(
    sessions, relay, caplog, monkeypatch, busy_seconds
):
    """The lock's holder needs the event loop to finish: the blocking commit lets it run
    between tries (2 s: recorded at once when it is released) and gives up to the
    asynchronous path after BUSY_SECONDS (0.05 s: the async path waits for it)."""
    monkeypatch.setattr(sent_now, "BUSY_SECONDS", busy_seconds)
    send, pool = activities(sessions, relay, cls=WriteLockedMeanwhile)
    cid = await customer(sessions)
    req = request(cid)
    caplog.set_level(logging.WARNING)
    try:
        outcome = await attempt(1).run(send.send_step, req)
    finally:
        await pool.close()
    assert WriteLockedMeanwhile.released is not None
    await WriteLockedMeanwhile.released
    assert outcome.status == "sent"
    fell_back = "recording sent at once failed (database is locked)" in caplog.text
    assert fell_back == (busy_seconds < 0.5)
    found = await row(sessions, req)
    assert found is not None and found.status == "sent"
    assert list(relay.delivered().values()) == [1]


class LosesItsConnection(SendActivities):
    """The synchronous connection is killed by the server between the claim and the dot."""

    async def _claim(self, a: Attempt, message_id: str, coupon_code: str | None) -> None:
        await super()._claim(a, message_id, coupon_code)
        async with self._sessions() as s:
            await s.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'journeys-sent-now' "
                    "AND datname = current_database()"
                )
            )


async def test_a_lost_connection_falls_back_to_the_async_path_and_records_sent_once(
    pg, relay, caplog
):
    send, pool = activities(pg, relay, cls=LosesItsConnection)
    cid = await customer(pg)
    req = request(cid)
    caplog.set_level(logging.WARNING)
    try:
        outcome = await attempt(1).run(send.send_step, req)
    finally:
        await pool.close()
    assert outcome.status == "sent"
    assert "recording sent at once failed" in caplog.text
    found = await row(pg, req)
    assert found is not None and found.status == "sent"
    assert list(relay.delivered().values()) == [1]


class CustomerLockedMeanwhile(LockedMeanwhile):
    """The customer's row (as another of the worker's own claims would hold it)."""

    async def lock(self, s: AsyncSession, a: Attempt) -> None:
        await s.execute(select(Customer).where(Customer.id == a.req.customer_id).with_for_update())


async def test_a_lock_on_the_customer_times_out_the_blocking_statement_not_the_loop(
    pg, relay, caplog
):
    send, pool = activities(pg, relay, cls=CustomerLockedMeanwhile)
    cid = await customer(pg)
    req = request(cid)
    caplog.set_level(logging.WARNING)
    try:
        outcome = await attempt(1).run(send.send_step, req)
    finally:
        await pool.close()
    assert CustomerLockedMeanwhile.released is not None
    await CustomerLockedMeanwhile.released
    assert outcome.status == "sent"
    assert "lock timeout" in caplog.text  # the server's lock_timeout, then the async path
    found = await row(pg, req)
    assert found is not None and found.status == "sent"
    assert list(relay.delivered().values()) == [1]


async def test_the_watchdog_ends_a_call_the_store_never_answers(pg, postgres_url, monkeypatch):
    # The server's own limits out of the way: only the watchdog can end this call.
    monkeypatch.setattr(sent_now, "STATEMENT_TIMEOUT_MS", 0)
    monkeypatch.setattr(sent_now, "LOCK_TIMEOUT_MS", 0)
    monkeypatch.setattr(sent_now, "WATCHDOG_SECONDS", 0.3)
    engine = make_engine(postgres_url)
    now = sent_now.SentNow(engine.url)
    # Readied (its statement prepared) first, then the table locked by another transaction.
    async with now.recorder() as record, pg.begin() as s:
        await s.execute(text("LOCK TABLE send_log IN ACCESS EXCLUSIVE MODE"))
        with pytest.raises(sent_now.NotRecorded):
            record("a-key", "an-attempt")
    assert now._idle == []  # the shut connection is not kept for the next send
    await now.close()
    await engine.dispose()


class TakenOverBeforeThe250(SendActivities):
    """Another attempt takes the claim over between the claim and the dot (as a retry does
    when this attempt's lease ran out)."""

    async def _claim(self, a: Attempt, message_id: str, coupon_code: str | None) -> None:
        await super()._claim(a, message_id, coupon_code)
        async with self._sessions.begin() as s:
            await s.execute(
                update(SendLog)
                .where(SendLog.idempotency_key == a.key)
                .values(attempt="another-attempt")
            )


async def test_a_claim_taken_over_before_the_250_is_not_this_attempts_send(sessions, relay):
    """The relay has the message, but the row is another attempt's: this attempt records
    nothing and says so (``already_done``: the app's send counter counts it once, with the
    attempt whose row it is)."""
    send, pool = activities(sessions, relay, cls=TakenOverBeforeThe250)
    cid = await customer(sessions)
    req = request(cid)
    try:
        outcome = await attempt(1).run(send.send_step, req)
    finally:
        await pool.close()
    assert (outcome.status, outcome.already_done) == ("sent", True)
    found = await row(sessions, req)
    assert found is not None and (found.status, found.attempt) == ("sending", "another-attempt")
    assert list(relay.delivered().values()) == [1]


class LockWatchingRelay(Relay):
    """A relay that, once it has the final dot and before it answers, tries to take the
    store's SQLite write lock from a connection of its own (as another process's writer
    would) and notes whether it could; ``free_within`` seconds it keeps trying."""

    def __init__(self, path: str, *, free_within: float = 0.0) -> None:
        super().__init__()
        self.path, self.free_within = path, free_within
        self.lock_free: list[bool] = []

    def _try_lock(self) -> bool:
        conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        deadline = time.monotonic() + self.free_within
        free = self._try_lock()
        while not free and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            free = self._try_lock()
        self.lock_free.append(free)
        return await super().handle_DATA(server, session, envelope)


async def send_through(
    sessions: SessionFactory, relay: LockWatchingRelay, *, after_dot: str = ""
) -> tuple[SendOutcome, SendStepInput]:
    """One send of a new customer's email through ``relay`` (answering ``after_dot`` to
    the dot when given); the relay is stopped after."""
    send, pool = activities(sessions, relay)
    cid = await customer(sessions)
    req = request(cid)
    if after_dot:
        relay.after_dot[f"{cid}@example.com"] = after_dot
    try:
        return await asyncio.wait_for(attempt(1).run(send.send_step, req), timeout=20), req
    finally:
        await pool.close()
        relay.stop()


@pytest.fixture
def store_path(db_url: str) -> str:
    path = make_url(db_url).database
    assert path
    return path


@pytest.mark.own_store
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_on_sqlite_the_write_lock_is_taken_before_the_dot_and_the_250_commits_on_it(
    sessions, store_path, monkeypatch
):
    """A relay that answers quickly: from right before the dot until ``sent`` is committed
    the send holds SQLite's write lock, so the commit after the 250 waits for no writer."""
    monkeypatch.setattr(sent_now, "HOLD_SECONDS", 30.0)  # however slow this machine is
    relay = LockWatchingRelay(store_path)
    outcome, req = await send_through(sessions, relay)
    assert outcome.status == "sent"
    assert relay.lock_free == [False]  # held across the dot, by the send
    assert relay._try_lock()  # and let go with the commit
    found = await row(sessions, req)
    assert found is not None and found.status == "sent" and found.sent_at is not None
    assert list(relay.delivered().values()) == [1]


@pytest.mark.own_store
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_on_sqlite_a_slow_reply_to_the_dot_lets_the_write_lock_go(
    sessions, store_path, monkeypatch
):
    """The relay takes its time to answer the dot: the lock goes after HOLD_SECONDS (other
    writers are not held up by the relay), and the 250 is still recorded, once."""
    monkeypatch.setattr(sent_now, "HOLD_SECONDS", 0.05)
    relay = LockWatchingRelay(store_path, free_within=1.5)
    outcome, req = await send_through(sessions, relay)
    assert outcome.status == "sent"
    assert relay.lock_free == [True]
    found = await row(sessions, req)
    assert found is not None and found.status == "sent"
    assert list(relay.delivered().values()) == [1]


@pytest.mark.own_store
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_on_sqlite_a_bounce_after_the_dot_is_recorded_without_waiting_for_the_held_lock(
    sessions, store_path, monkeypatch
):
    """A 550 after the dot is written through the store's own connections: the send lets
    go of the lock it took for a 250 first (else that write would wait for its own lock)."""
    monkeypatch.setattr(sent_now, "HOLD_SECONDS", 60.0)
    relay = LockWatchingRelay(store_path)
    outcome, req = await send_through(sessions, relay, after_dot="550 5.1.1 no such mailbox")
    assert outcome.status == "bounced"
    assert relay.lock_free == [False]
    found = await row(sessions, req)
    assert found is not None and found.status == "bounced"


def test_the_lock_is_not_held_for_a_relay_that_answers_dots_slowly(tmp_path):
    """Whether the next send takes the lock before its dot: not once the relay's recent
    answers were slower than HOLD_SECONDS, again once they are quick."""
    store = sent_now.SentNowSqlite(str(tmp_path / "none.db"))
    assert store.reserving()  # nothing known yet: a local relay is the common case
    for _ in range(sent_now.SLOW_REPLIES_ALLOWED - 1):
        store.replied(sent_now.HOLD_SECONDS * 10)
    assert store.reserving()
    store.replied(sent_now.HOLD_SECONDS * 10)
    assert not store.reserving()
    for _ in range(sent_now.REPLIES_KEPT):
        store.replied(sent_now.HOLD_SECONDS / 10)
    assert store.reserving()


async def test_the_connections_kept_for_sends_are_closed_when_the_store_engine_is_disposed(
    pg, postgres_url, relay
):
    """Each process's send activities keep a few connections for the commit after a 250;
    they go with the engine's (worker shutdown, a test's stack torn down), not at exit only:
    kept until then, two test suites side by side used up PostgreSQL's connections."""
    engine = make_engine(postgres_url)
    send, pool = activities(make_session_factory(engine), relay)
    req = request(await customer(pg))
    try:
        assert (await attempt(1).run(send.send_step, req)).status == "sent"
    finally:
        await pool.close()
    assert isinstance(send._sent_now, sent_now.SentNow)
    kept = list(send._sent_now._idle)
    pids = [conn.info.backend_pid for conn in kept]
    assert pids and not any(conn.closed for conn in kept)
    await engine.dispose()
    assert all(conn.closed for conn in kept) and send._sent_now._idle == []

    async def still_there() -> int:
        async with pg() as s:
            found = await s.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                {"pids": pids},
            )
        return int(found or 0)

    assert await eventually(still_there, lambda n: n == 0) == 0
