"""Delivering what accepted events ask of Temporal: the outbox relay (docs/architecture.md
decision 10: accept, commit, then deliver).

An event's transaction writes its Temporal work (a journey to start, a run to signal) as
outbox rows (store/outbox.py). After the commit the ``Relay`` delivers them:

- at once, for the customers whose events they were (``settle``, ``settle_all``): the
  caller waits a moment
  (``answer_within``) so a journey still starts within milliseconds of its event;
- in the background (``start``): a loop that delivers whatever is left, from this process
  or another one, in order per customer, and retries until Temporal takes it; it resumes
  after a restart, since the rows are in the store. The HTTP API runs one; a process that
  uses the Python API without starting one (the CLI) leaves what it could not deliver to
  it.

A customer's rows are delivered oldest first, a run's one at a time, by one deliverer at
a time (an asyncio lock per customer in the process, a lease on the row across processes),
and no transaction is open while Temporal is called. Customers are delivered in groups (a
batch's, a loop pass's): one transaction per round for the whole group, which deletes what
the round before delivered and leases every customer's next rows. A signal to a run that
does not exist counts as delivered (nobody was listening: that is the answer), and so does
a start the id policy refused (already welcomed). While Temporal is unreachable nothing is
tried at once: the loop probes it with the oldest row, backing off up to
``DOWN_BACKOFF_MAX``, and delivers everything in order when it answers again. A row
Temporal refuses for good (an invalid argument) is parked: kept with its error for people
to see, and the next one goes.

Delivery is at least once: a process that dies between Temporal's answer and deleting the
row leaves it to be delivered again when its lease runs out (``LEASE``). Journeys take a
repeated signal calmly (a second "cart changed" restarts the same wait, a second "ordered"
finds the run gone).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from contextlib import suppress
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.service import RPCError, RPCStatusCode

import core.contracts
from core.contracts import JourneyInput
from starter.ingest.runs import Runs
from store import outbox
from store.db import SessionFactory, readers
from store.models import Outbox, utcnow

log = logging.getLogger("starter.outbox")
T = TypeVar("T")
FIRST = asyncio.FIRST_COMPLETED

LEASE = timedelta(seconds=30)  # a claimed row is another relay's again after this
IDLE_POLL_SECONDS = 1.0  # how often the loop looks for rows when nothing woke it
BUSY_POLL_SECONDS = 0.05  # ... and right after a pass that found some
DOWN_BACKOFF_MAX = 5.0  # the longest pause between probes while Temporal is unreachable
RETRY_MAX = timedelta(minutes=5)  # the longest pause before retrying a row Temporal refused
PASS_MAX = 100  # customers a pass of the loop delivers to together, at most
SETTLING_MAX = 64  # customers delivered right after their commit at once; more: the loop's
# Temporal cannot be reached (down, restarting, network): wait for it, it is nobody's fault.
UNREACHABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED}
# Temporal will never take this row as it is: park it and go on with the customer's next.
REFUSED_FOR_GOOD = {RPCStatusCode.INVALID_ARGUMENT}


# -- what a row carries ----------------------------------------------------------------------


def _typed(model: BaseModel) -> dict[str, Any]:
    return {"type": type(model).__name__, "value": model.model_dump(mode="json")}


def _model(data: dict[str, Any]) -> BaseModel:
    """A contract back from a row: any pydantic model of core.contracts, by its name."""
    cls = getattr(core.contracts, str(data["type"]), None)
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise ValueError(f"no contract named {data['type']!r} in core.contracts")
    return cls.model_validate(data["value"])


def start_payload(
    inp: JourneyInput, *, signal: tuple[str, BaseModel] | None, run_id: str | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"input": _typed(inp), "run_id": run_id}
    if signal is not None:
        payload["signal"] = {"name": signal[0], "arg": _typed(signal[1])}
    return payload


def signal_payload(name: str, arg: BaseModel) -> dict[str, Any]:
    return {"name": name, "arg": _typed(arg)}


async def deliver(runs: Runs, row: Outbox) -> bool:
    """Hand one row to Temporal: True when it started a run or reached a live one."""
    if row.kind == "signal":
        return await runs.signal(row.workflow_id, row.payload["name"], _model(row.payload["arg"]))
    inp = _model(row.payload["input"])
    if not isinstance(inp, JourneyInput):
        raise ValueError(f"{type(inp).__name__} is no journey input")
    sig = row.payload.get("signal")
    signal = (sig["name"], _model(sig["arg"])) if sig else None
    return await runs.start(inp, signal=signal, run_id=row.payload.get("run_id"))


# -- the relay ---------------------------------------------------------------------------------


class _CustomerLocks:
    """One asyncio lock per customer while anyone in this process uses it: a group of
    customers is taken at once (``take``: the free ones), one customer waited for in line
    (``enter``, then acquire its lock). Nobody waits while holding a lock another one
    waiting for it holds: a group waits only for customers already in use when it took
    its own, and ``take`` never takes one somebody waits for."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def enter(self, customer_id: str) -> asyncio.Lock:
        """Join the customer's users now (in line behind those before); its lock, to
        acquire, and ``leave`` once done."""
        lock, users = self._locks.get(customer_id, (asyncio.Lock(), 0))
        self._locks[customer_id] = (lock, users + 1)
        return lock

    async def take(self, customer_ids: Iterable[str]) -> list[str]:
        """Lock those of these customers nobody in this process uses (without waiting:
        a new lock is acquired at once); the ones taken, each to be given back with
        ``give``."""
        taken = []
        for customer_id in dict.fromkeys(customer_ids):
            if customer_id not in self._locks:
                lock = asyncio.Lock()
                self._locks[customer_id] = (lock, 1)
                await lock.acquire()
                taken.append(customer_id)
        return taken

    def give(self, customer_ids: Iterable[str]) -> None:
        for customer_id in customer_ids:
            self._locks[customer_id][0].release()
            self.leave(customer_id)

    def leave(self, customer_id: str) -> None:
        lock, users = self._locks[customer_id]
        if users <= 1:
            del self._locks[customer_id]
        else:
            self._locks[customer_id] = (lock, users - 1)


class Relay:
    """Delivers the outbox rows of one task queue; one per ``Journeys``."""

    def __init__(
        self,
        sessions: SessionFactory,
        runs: Runs,
        *,
        task_queue: str,
        answer_within: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._readers = readers(sessions)
        self._runs = runs
        self._task_queue = task_queue
        self.answer_within = answer_within
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._locks = _CustomerLocks()
        self._waiting: dict[int, asyncio.Future[bool]] = {}
        self._settling = 0  # customers being delivered right after their commit
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._unreachable = False  # the last call found Temporal unreachable
        self._closing = False

    @property
    def temporal_unreachable(self) -> bool:
        return self._unreachable

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Run the background loop (in the running event loop); calling it again is fine."""
        if self._loop is None or self._loop.done():
            self._wake = asyncio.Event()
            self._loop = asyncio.create_task(self._run(), name=f"outbox relay {self.owner}")

    async def close(self, *, grace: float = 5.0) -> None:
        """Stop the loop; deliveries under way get ``grace`` seconds to finish. What is
        left stays in the store for the next relay."""
        self._closing = True
        self.wake()
        if self._loop is not None:
            await _stop(self._loop, grace=0)
            self._loop = None
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in late:
                await _stop(task, grace=0)
        self._closing = False

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- right after a commit ------------------------------------------------------------

    async def settle(
        self, customer_id: str, row_ids: list[int], *, within: float | None = None
    ) -> dict[int, bool] | None:
        """``settle_all`` for one customer."""
        answers = await self.settle_all({customer_id: row_ids}, within=within)
        return answers[customer_id]

    async def settle_all(
        self, rows: Mapping[str, list[int]], *, within: float | None = None
    ) -> dict[str, dict[int, bool] | None]:
        """Deliver these customers' work now (``rows``: customer id → the row ids its
        events just committed) and wait for it up to ``within`` seconds (default
        ``answer_within``): per customer, per row whether Temporal took it (a run
        started or reached), or None when not all of the customer's rows were delivered
        in time (a relay's loop delivers them: this one's if it was started, else the
        API's). The customers are delivered together (``_drain``: one transaction per
        round for all of them). Once ``SETTLING_MAX`` customers are being delivered this
        way (a burst Temporal is slower to take than the store; one batch may pass it, the
        check is before it), a running loop is left to deliver the next ones, in order, at
        its own pace, and nobody waits."""
        answers: dict[str, dict[int, bool] | None] = {c: {} for c, ids in rows.items() if not ids}
        wanted = {c: ids for c, ids in rows.items() if ids}
        if not wanted:
            return answers
        loop = asyncio.get_running_loop()
        futures = {c: {row_id: loop.create_future() for row_id in ids} for c, ids in wanted.items()}
        for theirs in futures.values():
            self._waiting.update(theirs)
        try:
            running = self._loop is not None and not self._loop.done()
            if running and (self._unreachable or self._settling >= SETTLING_MAX):
                self.wake()  # do not keep the caller waiting: the loop delivers (or probes)
                return {**answers, **dict.fromkeys(wanted)}
            settling = len(wanted)
            self._settling += settling  # less again once the drain ended (or never began)
            drain = self._spawn(self._drain(list(wanted), probe=not running))
            drain.add_done_callback(lambda _: self._settled(settling))
            ours = asyncio.gather(*(f for theirs in futures.values() for f in theirs.values()))
            # a gather cancelled below ends with an exception nobody reads: read it
            ours.add_done_callback(lambda f: f.cancelled() or f.exception())
            # Done when all these rows are delivered, or when the drain stopped without
            # them (Temporal did not take one, or another process holds the customer).
            either: set[asyncio.Future[Any]] = {drain, ours}
            wait = self.answer_within if within is None else within
            await asyncio.wait(either, timeout=wait, return_when=FIRST)
            ours.cancel()  # the rows not delivered by now are left to the relay
            for c, theirs in futures.items():
                whole = all(f.done() and not f.cancelled() for f in theirs.values())
                answers[c] = {r: f.result() for r, f in theirs.items()} if whole else None
            return answers
        finally:
            for theirs in futures.values():
                for row_id in theirs:
                    self._waiting.pop(row_id, None)

    def _settled(self, customers: int) -> None:
        self._settling -= customers

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _resolve(self, row_id: int, took: bool) -> None:
        future = self._waiting.get(row_id)
        if future is not None and not future.done():
            future.set_result(took)

    # -- delivering ----------------------------------------------------------------------

    async def _drain(self, customers: list[str], *, probe: bool, wait: bool = True) -> None:
        """Deliver these customers' rows, each customer's in order. The ones nobody else
        in this process is delivering to are delivered together (``_rounds``), each given
        back as soon as it is done with; each of the others after whoever holds it
        (``wait``), or not at all (the loop: its holder delivers to it)."""
        mine = await self._locks.take(customers)
        queued = [(c, self._locks.enter(c)) for c in customers if c not in mine] if wait else []
        began: set[str] = set()
        try:
            await _all_of(
                [
                    self._rounds(mine, probe=probe, done_with=self._locks.give),
                    *(self._after(c, lock, began, probe=probe) for c, lock in queued),
                ]
            )
        finally:
            for c, _ in queued:
                if c not in began:  # cancelled before its turn came: out of the line
                    self._locks.leave(c)

    async def _after(
        self, customer_id: str, lock: asyncio.Lock, began: set[str], *, probe: bool
    ) -> None:
        """Deliver to a customer once its lock (``_CustomerLocks.enter``) is ours."""
        began.add(customer_id)
        try:
            async with lock:
                await self._rounds([customer_id], probe=probe, done_with=_nobody)
        finally:
            self._locks.leave(customer_id)

    async def _rounds(
        self, customers: list[str], *, probe: bool, done_with: Callable[[list[str]], None]
    ) -> None:
        """Deliver these customers' rows until none is left or one is not taken, round
        after round: each round one transaction for all of them (``_claim``: delete what
        the round before delivered, lease each customer's next wave, ``outbox.claim_waves``:
        the head and the rows after it, each for another run), then every wave's rows to
        Temporal at the same time. A customer whose wave was not all taken drops out; the
        others go on. Each customer goes to ``done_with`` once, as soon as it is out and
        what was delivered to it is deleted (or when this ends). ``probe``: while Temporal
        seems unreachable, try one row (the first customer's) all the same, and the rest
        once it is taken (the loop's probe). Transactions per round, not per customer: a
        burst's hundred customers take two turns of SQLite's one write lock, not two
        hundred."""
        going = list(customers)
        out: list[str] = []  # done with, what was delivered to them not yet deleted
        taken: list[tuple[int, bool]] = []  # delivered, not yet deleted
        probing = probe and self._unreachable  # one row first, then the rest if it is taken
        try:
            try:
                while going and (probing or not self._unreachable) and not self._closing:
                    asked = going[:1] if probing else going
                    most = 1 if probing else outbox.WAVE_MAX
                    probing = False
                    waves = await self._claim(asked, taken, most=most)
                    # what was delivered to them is deleted now: the ones out after the
                    # round before, and the ones with nothing more
                    finished = [c for c in asked if c not in waves]
                    done_with(out + finished)
                    now = [c for c in asked if c in waves]
                    # every delivery ends before the next round
                    done = await _all_of(self._deliver_wave(waves[c], taken) for c in now)
                    out = [c for c, whole in zip(now, done, strict=True) if not whole]
                    going = [c for c in going if c not in out and c not in finished]
            finally:
                if taken:
                    await self._claim([], taken, most=0)
        except Exception:  # the store failed: the rows stay, the loop tries again
            log.warning("outbox: delivering to customers %s stopped", customers, exc_info=True)
        finally:
            done_with(out + going)

    async def _deliver_wave(self, wave: list[Outbox], taken: list[tuple[int, bool]]) -> bool:
        """A wave's rows to Temporal at the same time; True when all are done with."""
        done = await _all_of(self._deliver(row, taken) for row in wave)
        return all(done)

    async def _claim(
        self, customers: list[str], delete: list[tuple[int, bool]], *, most: int
    ) -> dict[str, list[Outbox]]:
        """One transaction: delete the rows delivered (``delete``: row id, whether
        Temporal took it; their callers learn it once that is committed), then lease
        these customers' next waves of at most ``most`` rows each (0: only delete);
        customer id → wave, for those that have one."""
        async with self._sessions.begin() as s:
            if delete:
                await outbox.delivered(s, row_ids=[row_id for row_id, _ in delete])
            waves: dict[str, list[Outbox]] = {}
            if most and customers:
                waves = await outbox.claim_waves(
                    s,
                    task_queue=self._task_queue,
                    customer_ids=customers,
                    owner=self.owner,
                    now=utcnow(),
                    lease=LEASE,
                    limit=most,
                )
        for row_id, took in delete:
            self._resolve(row_id, took)
        delete.clear()
        return waves

    async def _deliver(self, row: Outbox, taken: list[tuple[int, bool]]) -> bool:
        """One row to Temporal and its outcome to the store; True when it is done with
        (taken: added to ``taken``, to be deleted; or parked)."""
        try:
            took = await deliver(self._runs, row)
        except asyncio.CancelledError:  # shutting down: the row is free for the next relay
            with suppress(Exception):
                await asyncio.shield(self._release(row))
            raise
        except RPCError as exc:
            if exc.status in UNREACHABLE:
                self._unreachable = True
                await self._retry(row, exc, backoff=False)
            elif exc.status in REFUSED_FOR_GOOD:
                await self._park(row, exc)
                return True
            else:
                await self._retry(row, exc, backoff=True)
            return False
        except (ValidationError, ValueError, KeyError, TypeError) as exc:  # a row we cannot read
            await self._park(row, exc)
            return True
        except (OSError, RuntimeError, TimeoutError) as exc:  # the connection to Temporal
            self._unreachable = True
            await self._retry(row, exc, backoff=False)
            return False
        except Exception as exc:  # anything else: this row again later, the next ones wait
            await self._retry(row, exc, backoff=True)
            return False
        self._unreachable = False
        taken.append((row.id, took))
        return True

    async def _release(self, row: Outbox) -> None:
        async with self._sessions.begin() as s:
            await outbox.release(s, row_id=row.id, owner=self.owner)

    async def _retry(self, row: Outbox, exc: BaseException, *, backoff: bool) -> None:
        delay = min(timedelta(seconds=2 ** min(row.attempts, 20)), RETRY_MAX)
        log.warning(
            "outbox: %s %s for customer %s not taken (attempt %d): %s",
            row.kind,
            row.workflow_id,
            row.customer_id,
            row.attempts + 1,
            exc,
        )
        async with self._sessions.begin() as s:
            await outbox.retry_later(
                s, row_id=row.id, error=str(exc), at=utcnow() + delay if backoff else None
            )

    async def _park(self, row: Outbox, exc: BaseException) -> None:
        log.error(
            "outbox: %s %s for customer %s refused for good, parked (row %d): %s",
            row.kind,
            row.workflow_id,
            row.customer_id,
            row.id,
            exc,
        )
        async with self._sessions.begin() as s:
            await outbox.park(s, row_id=row.id, error=f"{type(exc).__name__}: {exc}")
        self._resolve(row.id, False)

    # -- the background loop -------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.0
        while not self._closing:
            busy = False
            try:
                busy = await self._pass()
            except Exception:
                log.warning("outbox: the relay could not read the store", exc_info=True)
            if self._unreachable:
                backoff = min(max(backoff * 2, 0.5), DOWN_BACKOFF_MAX)
                delay = backoff
            else:
                backoff = 0.0
                delay = BUSY_POLL_SECONDS if busy else IDLE_POLL_SECONDS
            await self._sleep(delay)

    async def _pass(self) -> bool:
        """Deliver to every customer with due rows; True when there were some."""
        async with self._readers() as s:  # a read: no write lock taken on SQLite
            due = await outbox.due_customers(
                s, task_queue=self._task_queue, owner=self.owner, now=utcnow(), limit=PASS_MAX
            )
        if not due:
            return False
        # While Temporal seems unreachable, one probe with the oldest row of the first
        # customer not held here; the rest when it is taken. The held ones: their holder's.
        await self._drain(due, probe=True, wait=False)
        return True

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()


async def _all_of(work: Iterable[Awaitable[T]]) -> list[T]:
    """Await all of ``work`` at the same time; once every one ended, raise the first error
    among them (one failing does not leave the others running unwatched)."""
    done = await asyncio.gather(*work, return_exceptions=True)
    ended: list[T] = []
    for d in done:
        if isinstance(d, BaseException):
            raise d
        ended.append(d)
    return ended


def _nobody(customers: list[str]) -> None:
    """``done_with`` of a customer whose lock its holder gives back itself."""


async def _stop(task: asyncio.Task[Any], *, grace: float) -> None:
    """Cancel ``task`` and wait until it ends. Again and again: a cancellation can be
    swallowed (the Temporal client turns one into a connection error while connecting)."""
    if grace > 0:
        await asyncio.wait({task}, timeout=grace)
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        log.warning("outbox: a delivery ended with %r", task.exception())
