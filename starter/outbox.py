"""Delivering what accepted events ask of Temporal: the outbox relay (docs/architecture.md
decision 10: accept, commit, then deliver).

An event's transaction writes its Temporal work (a journey to start, a run to signal) as
outbox rows (store/outbox.py). After the commit the ``Relay`` delivers them:

- at once, for the customer whose event it was (``settle``): the caller waits a moment
  (``answer_within``) so a journey still starts within milliseconds of its event;
- in the background (``start``): a loop that delivers whatever is left, from this process
  or another one, in order per customer, and retries until Temporal takes it; it resumes
  after a restart, since the rows are in the store. The HTTP API runs one; a process that
  uses the Python API without starting one (the CLI) leaves what it could not deliver to
  it.

A customer's rows are delivered one at a time, oldest first, by one deliverer at a time
(an asyncio lock per customer in the process, a lease on the row across processes), and no
transaction is open while Temporal is called. A signal to a run that does not exist counts
as delivered (nobody was listening: that is the answer), and so does a start the id policy
refused (already welcomed). While Temporal is unreachable nothing is tried at once: the
loop probes it with the oldest row, backing off up to ``DOWN_BACKOFF_MAX``, and delivers
everything in order when it answers again. A row Temporal refuses for good (an invalid
argument) is parked: kept with its error for people to see, and the next one goes.

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
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio.service import RPCError, RPCStatusCode

import core.contracts
from core.contracts import JourneyInput
from starter.ingest.runs import Runs
from store import outbox
from store.db import SessionFactory
from store.models import Outbox, utcnow

log = logging.getLogger("starter.outbox")
FIRST = asyncio.FIRST_COMPLETED

LEASE = timedelta(seconds=30)  # a claimed row is another relay's again after this
IDLE_POLL_SECONDS = 1.0  # how often the loop looks for rows when nothing woke it
BUSY_POLL_SECONDS = 0.05  # ... and right after a pass that found some
DOWN_BACKOFF_MAX = 5.0  # the longest pause between probes while Temporal is unreachable
RETRY_MAX = timedelta(minutes=5)  # the longest pause before retrying a row Temporal refused
PARALLEL_CUSTOMERS = 32  # customers the loop delivers to at the same time
SETTLING_MAX = 64  # deliveries right after a commit under way at once; more: the loop's
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
    """One asyncio lock per customer while anyone in this process uses it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def held(self, customer_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(customer_id, (asyncio.Lock(), 0))
        self._locks[customer_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
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
        self._runs = runs
        self._task_queue = task_queue
        self.answer_within = answer_within
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._locks = _CustomerLocks()
        self._waiting: dict[int, asyncio.Future[bool]] = {}
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
        """Deliver the customer's work now and wait for these rows up to ``within`` seconds
        (default ``answer_within``): per row whether Temporal took it (a run started or
        reached), or None when not all were delivered in time (a relay's loop delivers
        them: this one's if it was started, else the API's). While ``SETTLING_MAX``
        deliveries of this kind are under way (a burst Temporal is slower to take than the
        store), a running loop is left to deliver it, in order, at its own pace."""
        if not row_ids:
            return {}
        loop = asyncio.get_running_loop()
        futures = {row_id: loop.create_future() for row_id in row_ids}
        self._waiting.update(futures)
        try:
            running = self._loop is not None and not self._loop.done()
            if running and (self._unreachable or len(self._tasks) >= SETTLING_MAX):
                self.wake()  # do not keep the caller waiting: the loop delivers (or probes)
                return None
            drain = self._spawn(self._drain(customer_id, probe=not running))
            ours = asyncio.gather(*futures.values())
            # a gather cancelled below ends with an exception nobody reads: read it
            ours.add_done_callback(lambda f: f.cancelled() or f.exception())
            # Done when all these rows are delivered, or when the drain stopped without
            # them (Temporal did not take one, or another process holds the customer).
            either: set[asyncio.Future[Any]] = {drain, ours}
            wait = self.answer_within if within is None else within
            await asyncio.wait(either, timeout=wait, return_when=FIRST)
            if not ours.done():
                ours.cancel()
                return None
            return {row_id: f.result() for row_id, f in futures.items()}
        finally:
            for row_id in row_ids:
                self._waiting.pop(row_id, None)

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

    async def _drain(self, customer_id: str, *, probe: bool) -> None:
        """Deliver the customer's rows in order until none is left or one is not taken:
        wave after wave (``outbox.claim_wave``: the head and the rows after it, each for
        another run), a wave's rows to Temporal at the same time. ``probe``: try one row
        even while Temporal seemed unreachable (the loop's probe). The rows Temporal took
        are deleted in the transaction that claims the next wave (one transaction per
        wave, not two)."""
        try:
            async with self._locks.held(customer_id):
                taken: list[tuple[int, bool]] = []  # delivered, not yet deleted
                try:
                    while (probe or not self._unreachable) and not self._closing:
                        most = 1 if probe else outbox.WAVE_MAX  # a probe tries one row
                        probe = False
                        wave = await self._claim(customer_id, delete=taken, most=most)
                        if not wave:
                            return
                        # every delivery of the wave ends before the next step (a store
                        # failure in one does not leave the others running unwatched)
                        done = await asyncio.gather(
                            *(self._deliver(row, taken) for row in wave), return_exceptions=True
                        )
                        for failed in done:
                            if isinstance(failed, BaseException):
                                raise failed
                        if not all(done):
                            return
                finally:
                    if taken:
                        await self._claim(customer_id, delete=taken, most=0)
        except Exception:  # the store failed: the rows stay, the loop tries again
            log.warning("outbox: delivering to customer %s stopped", customer_id, exc_info=True)

    async def _claim(
        self, customer_id: str, *, delete: list[tuple[int, bool]], most: int
    ) -> list[Outbox]:
        """Delete the rows delivered (``delete``: row id, whether Temporal took it; their
        callers learn it once that is committed), then claim the customer's next wave of
        at most ``most`` rows (0: only delete)."""
        async with self._sessions.begin() as s:
            if delete:
                await outbox.delivered(s, row_ids=[row_id for row_id, _ in delete])
            wave: list[Outbox] = []
            if most:
                wave = await outbox.claim_wave(
                    s,
                    task_queue=self._task_queue,
                    customer_id=customer_id,
                    owner=self.owner,
                    now=utcnow(),
                    lease=LEASE,
                    limit=most,
                )
        for row_id, took in delete:
            self._resolve(row_id, took)
        delete.clear()
        return wave

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
        async with self._sessions.begin() as s:
            due = await outbox.due_customers(
                s, task_queue=self._task_queue, owner=self.owner, now=utcnow()
            )
        if not due:
            return False
        if self._unreachable:  # one probe with the oldest row; the rest when it is taken
            await self._drain(due[0], probe=True)
            if self._unreachable:
                return True
            due = due[1:]
        for start in range(0, len(due), PARALLEL_CUSTOMERS):
            batch = due[start : start + PARALLEL_CUSTOMERS]
            await asyncio.gather(*(self._drain(cid, probe=False) for cid in batch))
        return True

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()


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
