"""Recording ``sent`` the instant the relay's 250 is read (PostgreSQL and SQLite).

The reply-to-commit window (docs/decisions/0002-send-idempotency.md) is the one moment a
crash can leave a delivered email looking unsent. An ``await`` on the store after the 250
hands the event loop to every other ready task of the worker (other sends rendering, the SDK's
polls, workflow activations coming back) before the commit's reply is read, and on a loaded
machine that queue, not the database, made the window's tail (p99 24-35 ms against a
statement that takes 1.2 ms). So on PostgreSQL the commit is one *blocking* call on a
synchronous psycopg connection readied before the dot: one prepared statement, autocommit,
one round trip, during which nothing else of this process runs.

Blocking the loop is bounded: the server aborts the statement after ``STATEMENT_TIMEOUT_MS``
or a lock wait after ``LOCK_TIMEOUT_MS`` (another of this worker's claims may hold the
customer's row while it waits for the loop), and a watchdog thread shuts the socket after
``WATCHDOG_SECONDS`` if the store stops answering altogether. Any failure raises
:class:`NotRecorded`; the caller then records ``sent`` through the asynchronous path, which
keeps trying through an outage.

On SQLite (:class:`SentNowSqlite`) the same is one short blocking transaction on a
synchronous ``sqlite3`` connection with no busy wait: if another writer holds the database's
write lock at that instant (it may be one of this worker's own transactions, waiting for the
loop this call holds), it raises :class:`Busy` at once; the caller lets the loop run a
millisecond and tries again (SQLite's own busy handler would sleep up to 100 ms a time), and
after ``BUSY_SECONDS`` the asynchronous path records it.

SQLite has one write lock for the whole file, so the reply's commit can find it taken by any
other writer of any process, and waits as long as that writer holds it (the window's tail,
BENCHMARKS.md 4-send-window). So where the relay answers the dot quickly, the send takes the
write lock *before* the dot (:meth:`SqliteRecorder.reserve`, once its claim is committed) and
the 250's commit is then one UPDATE and COMMIT on a lock already held. The lock is kept at
most ``HOLD_SECONDS`` (then let go: the reply is recorded the usual way), and only taken while
fewer than ``SLOW_REPLIES_ALLOWED`` of the relay's last ``REPLIES_KEPT`` answers to a dot took
longer than that, so a distant or slow relay never makes other writers wait for its answers.

Shapes: :meth:`SentNow.recorder` gives an async context manager yielding a
``(key, attempt) -> bool`` callable (True: recorded; False: ``attempt`` no longer holds the
claim). Times are UTC.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from store.models import utcnow

STATEMENT_TIMEOUT_MS = 1000
LOCK_TIMEOUT_MS = 100
WATCHDOG_SECONDS = 1.5
IDLE_KEPT = 16  # connections kept for the next sends (at most the SMTP pool's size is used)

# The same statement as store.sends' asynchronous ending of ``sent``: the claim of this
# attempt ends, and the customer's last email moves forward (never backwards).
_SENT = """
WITH ended AS (
    UPDATE send_log SET status = 'sent', sent_at = %(at)s, lease_until = NULL
    WHERE idempotency_key = %(key)s AND attempt = %(attempt)s
      AND status IN ('sending', 'uncertain')
    RETURNING customer_id, decided_at
), emailed AS (
    UPDATE customers SET last_emailed_at = ended.decided_at, updated_at = %(at)s
    FROM ended
    WHERE customers.id = ended.customer_id
      AND (customers.last_emailed_at IS NULL OR customers.last_emailed_at < ended.decided_at)
)
SELECT customer_id FROM ended
"""

Recorder = Callable[[str, str], bool]


class NotRecorded(Exception):
    """The blocking commit did not answer in time or failed; nothing is known of it."""


class Busy(NotRecorded):
    """SQLite's write lock is held elsewhere: nothing was written; try again in a moment."""


BUSY_SECONDS = 2.0  # how long a caller tries again while SQLite's write lock is held
HOLD_SECONDS = 0.02  # SQLite: longest the write lock is kept across a dot for its reply
RESERVE_SECONDS = 0.02  # SQLite: how long a send tries to take it before its dot; then not
REPLIES_KEPT = 16  # SQLite: the relay's last answers to a dot that decide whether to reserve
SLOW_REPLIES_ALLOWED = 2  # ... of which this many may be slower than HOLD_SECONDS


class _Watchdog:
    """One daemon thread that shuts the socket of a call overrunning its deadline."""

    def __init__(self) -> None:
        self._due: dict[int, tuple[float, int]] = {}  # id(conn) -> (deadline, socket fd)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        with self._lock:
            self._due[id(conn)] = (time.monotonic() + WATCHDOG_SECONDS, conn.pgconn.socket)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sent-now", daemon=True)
                self._thread.start()

    def done(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        with self._lock:
            self._due.pop(id(conn), None)

    def _run(self) -> None:
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            with self._lock:
                late = [fd for deadline, fd in self._due.values() if deadline < now]
            for fd in late:
                with suppress(OSError):
                    dup = socket.socket(fileno=os.dup(fd))
                    try:
                        dup.shutdown(socket.SHUT_RDWR)
                    finally:
                        dup.close()


_WATCHDOG = _Watchdog()


class SentNow:
    """Synchronous connections to the store for the commit after a 250 (PostgreSQL only).

    ``url`` is the SQLAlchemy URL of the store (``postgresql+asyncpg://...``); connections are
    opened in a thread before the dot (never on the loop) and kept for the next send.
    """

    def __init__(self, url: URL) -> None:
        self._conninfo = psycopg.conninfo.make_conninfo(
            host=url.host or "localhost",
            port=str(url.port or 5432),
            user=url.username or "",
            password=url.password or "",
            dbname=url.database or "",
            connect_timeout="5",
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS} "
            f"-c lock_timeout={LOCK_TIMEOUT_MS}",
            application_name="journeys-sent-now",
        )
        self._idle: list[psycopg.Connection[tuple[object, ...]]] = []

    def _open(self) -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(self._conninfo, autocommit=True, prepare_threshold=0)
        # Prepared now, with a key that matches nothing (and parameters of the same types as
        # the real call's, which key the prepared statement), so the call after the 250 is
        # one Bind/Execute round trip.
        conn.execute(_SENT, {"key": "", "attempt": "", "at": utcnow()})
        return conn

    @asynccontextmanager
    async def recorder(self) -> AsyncIterator[Recorder]:
        """A connection readied for one send; given back (or closed, if it failed) after."""
        conn = self._idle.pop() if self._idle else await asyncio.to_thread(self._open)
        broken = False

        def record(key: str, attempt: str) -> bool:
            nonlocal broken
            _WATCHDOG.watch(conn)
            try:
                found = conn.execute(_SENT, {"key": key, "attempt": attempt, "at": utcnow()})
                return found.fetchone() is not None
            except psycopg.Error as exc:
                broken = True
                raise NotRecorded(str(exc).strip() or type(exc).__name__) from exc
            finally:
                _WATCHDOG.done(conn)

        try:
            yield record
        finally:
            if broken or conn.closed or len(self._idle) >= IDLE_KEPT:
                await asyncio.to_thread(conn.close)
            else:
                self._idle.append(conn)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await asyncio.to_thread(conn.close)

    def close_idle(self, *_: object) -> None:
        """Closes the connections kept for the next sends (those in use are kept after)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            with suppress(psycopg.Error):
                conn.close()


_SENT_SQLITE = (
    "UPDATE send_log SET status = 'sent', sent_at = ?, lease_until = NULL "
    "WHERE idempotency_key = ? AND attempt = ? AND status IN ('sending', 'uncertain') "
    "RETURNING customer_id, decided_at"
)
_EMAILED_SQLITE = (
    "UPDATE customers SET last_emailed_at = ?, updated_at = ? "
    "WHERE id = ? AND (last_emailed_at IS NULL OR last_emailed_at < ?)"
)


def _sqlite_time(at: datetime) -> str:
    """How SQLAlchemy keeps a UTC datetime in SQLite (naive, always with microseconds), so
    the rows read back and compare alike."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class SqliteRecorder:
    """Records ``sent`` on one synchronous ``sqlite3`` connection (a :data:`Recorder`), in a
    write transaction of its own or in the one :meth:`reserve` began before the dot.

    Raises :class:`Busy` when the write lock is held elsewhere (nothing written),
    :class:`NotRecorded` on any other failure."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.held = False  # a write transaction of ours is open (the lock is ours)
        self.broken = False

    def reserve(self) -> bool:
        """Takes the write lock now without waiting: True when it is ours."""
        if not self.held:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    return False
                self.broken = True
                return False
            self.held = True
        return True

    def release(self) -> None:
        """Lets the write lock go, if :meth:`reserve` took it and nothing used it."""
        if self.held:
            self.held = False
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                self.broken = True

    def __call__(self, key: str, attempt: str) -> bool:
        at = _sqlite_time(utcnow())
        try:
            if not self.held:
                self._conn.execute("BEGIN IMMEDIATE")
            self.held = False  # this call ends the transaction, one way or the other
            try:
                row = self._conn.execute(_SENT_SQLITE, (at, key, attempt)).fetchone()
                if row is not None:
                    self._conn.execute(_EMAILED_SQLITE, (row[1], at, row[0], row[1]))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return row is not None
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise Busy(str(exc)) from exc
            raise NotRecorded(str(exc) or type(exc).__name__) from exc
        except sqlite3.Error as exc:
            self.broken = True
            raise NotRecorded(str(exc) or type(exc).__name__) from exc


class SentNowSqlite:
    """The same for a SQLite file: a synchronous connection, no busy wait (see above); and
    the relay's recent answers to the dot, which say whether holding the lock for one pays."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._idle: list[sqlite3.Connection] = []
        self._replies: deque[float] = deque(maxlen=REPLIES_KEPT)  # seconds, dot to reply

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")  # as the store's own connections (store/db.py)
        return conn

    def replied(self, seconds: float) -> None:
        """The relay answered a dot after ``seconds``."""
        self._replies.append(seconds)

    def reserving(self) -> bool:
        """Whether a send should take the write lock before its dot: the relay answered
        nearly all of its recent dots within ``HOLD_SECONDS``."""
        return sum(t > HOLD_SECONDS for t in self._replies) < SLOW_REPLIES_ALLOWED

    @asynccontextmanager
    async def recorder(self) -> AsyncIterator[SqliteRecorder]:
        conn = self._idle.pop() if self._idle else self._open()
        record = SqliteRecorder(conn)
        try:
            yield record
        finally:
            record.release()
            if record.broken or len(self._idle) >= IDLE_KEPT:
                conn.close()
            else:
                self._idle.append(conn)

    async def close(self) -> None:
        self.close_idle()

    def close_idle(self, *_: object) -> None:
        """Closes the connections kept for the next sends (those in use are kept after)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def for_store(engine: AsyncEngine) -> SentNow | SentNowSqlite | None:
    """The blocking recorder for the store of ``engine``; None where there is none (an
    in-memory SQLite database: only the store's own connections see it). Its idle
    connections are closed whenever the engine is disposed, with the engine's own (a
    process that builds and disposes engines, as the test suite does, keeps none open)."""
    url = engine.url
    found: SentNow | SentNowSqlite | None = None
    if url.get_backend_name() == "postgresql":
        found = SentNow(url)
    elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        found = SentNowSqlite(url.database)
    if found is not None:
        event.listen(engine.sync_engine, "engine_disposed", found.close_idle)
    return found
