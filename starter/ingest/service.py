"""What every handler shares: the service's parts, one call's transaction, the result.

``handle`` is the one path of a tracked event (docs/architecture.md decision 10: accept, commit,
then deliver). In ONE short transaction: the event is recorded once (the same message id
again only counts as a repeat), the customer's row is locked (so their events are applied
one after the other, on PostgreSQL too), and the handler writes what the event means for
the store (cart, order, consent, suppression: the send gate reads it from the commit on)
and the Temporal work it carries (starts, signals) as outbox rows. After the commit the
relay delivers that work (starter/outbox.py): the answer waits for it a moment, so a
journey still starts within milliseconds, and says ``queued`` when Temporal did not take it
in time; the relay keeps trying until it does. No transaction waits on Temporal, and
Temporal being down refuses no event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, overload

from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from core.contracts import JourneyInput
from core.ids import workflow_id
from core.starting import entry_refusal
from journeys.config import Config, JourneyConfig
from journeys.loader import JourneyLoader
from settings import Settings
from starter.ingest.events import Event
from starter.ingest.runs import Runs
from starter.outbox import Relay, signal_payload, start_payload
from store import entries, events, outbox, products, repo
from store.db import SessionFactory
from store.lifecycle import stage_label
from store.models import Customer

T = TypeVar("T")
# PostgreSQL's "try again" answers: a deadlock, a serialization failure. The transaction
# was rolled back whole; running it again is safe (handlers only write to the store).
RETRY_SQLSTATES = {"40P01", "40001"}
ATTEMPTS = 5


class UnknownCustomer(LookupError):
    """The event names a customer that was never recorded (send the profile first)."""


class EmailRequired(UnknownCustomer):
    """The first identify of a customer carries no email address."""


@dataclass(frozen=True)
class EventResult:
    recorded: bool  # False: a duplicate of an event recorded before; nothing was done
    workflow_id: str | None = None
    # started | started_or_signalled | signalled | recorded | already_welcomed | outdated |
    # none; or queued: accepted and committed, its journeys hear of it when Temporal takes it
    action: str = "none"

    @property
    def duplicate(self) -> bool:
        return not self.recorded


@dataclass(frozen=True)
class Took:
    """An action that depends on whether Temporal took the event's work (a run started,
    or a live run was reached)."""

    yes: str
    no: str


SIGNALLED = Took("signalled", "recorded")


@dataclass(frozen=True)
class Handled:
    """What a handler did, before its Temporal work is delivered."""

    action: str | Took
    workflow_id: str | None = None
    recorded: bool = True


@dataclass(frozen=True)
class Ingest:
    """The service's parts, built once per ``Journeys``."""

    sessions: SessionFactory
    runs: Runs
    relay: Relay
    configs: JourneyLoader
    settings: Settings


@dataclass
class Call:
    """One event being handled: its open transaction, its (locked) customer, the service,
    and the outbox rows it wrote."""

    s: AsyncSession
    customer: Customer
    ingest: Ingest
    source: str  # the event's message id, kept on its outbox rows
    work: list[int] = field(default_factory=list)

    @overload
    def config(self, name: str) -> JourneyConfig: ...

    @overload
    def config(self, name: str, model: type[Config]) -> Config: ...

    def config(self, name: str, model: type[JourneyConfig] = JourneyConfig) -> JourneyConfig:
        return self.ingest.configs.config(name, model)

    async def start(
        self,
        inp: JourneyInput,
        *,
        signal: tuple[str, BaseModel] | None = None,
        run_id: str | None = None,
    ) -> None:
        """Start the journey after the commit (``signal``: signal-with-start, so a live run
        gets the signal instead)."""
        if inp.lifecycle_stage is None and self.customer.stage is not None:
            inp = inp.model_copy(update={"lifecycle_stage": stage_label(self.customer)})
        payload = start_payload(inp, signal=signal, run_id=run_id)
        wf_id = run_id or workflow_id(inp.config.name, inp.customer_id)
        if inp.config.entry is not None and await self._refused(inp, wf_id):
            return
        await self._enqueue("start", wf_id, payload)

    async def _refused(self, inp: JourneyInput, wf_id: str) -> bool:
        """The journey's ``[entry]`` rule refuses this customer now: recorded with why."""
        assert inp.config.entry is not None
        journey, now = inp.config.name, datetime.now(UTC)
        before = await entries.entered(self.s, customer_id=inp.customer_id, journey=journey)
        why = entry_refusal(inp.config.entry, before, now)
        if why is not None:
            await entries.record_refusal(
                self.s,
                customer_id=inp.customer_id,
                journey=journey,
                workflow_id=wf_id,
                reason=why,
                at=now,
            )
        return why is not None

    async def products_seen(self, lines: list[dict[str, Any]], *, ordered: bool = False) -> None:
        """Keep these products in the catalogue (``ordered``: count their quantities as
        ordered); within ``settled_together`` at the end of the batch, all at once."""
        batch = _TOGETHER.get()
        if batch is not None and batch.session is self.s:
            batch.seen.add(lines, ordered=ordered)
        else:
            await products.upsert_products(self.s, lines=lines, ordered=ordered)

    async def signal(self, wf_id: str, name: str, arg: BaseModel) -> None:
        """Signal the run after the commit, if it is live then."""
        await self._enqueue("signal", wf_id, signal_payload(name, arg))

    async def tell(self, wf_ids: Iterable[str], name: str, arg: BaseModel) -> None:
        """Signal each of these runs that is live."""
        for wf_id in wf_ids:
            await self.signal(wf_id, name, arg)

    async def _enqueue(self, kind: str, wf_id: str, payload: dict[str, object]) -> None:
        row_id = await outbox.enqueue(
            self.s,
            task_queue=self.ingest.runs.task_queue,
            customer_id=self.customer.id,
            kind=kind,
            workflow_id=wf_id,
            payload=dict(payload),
            source=self.source,
        )
        self.work.append(row_id)


E = TypeVar("E", bound=Event)
Handler = Callable[[Call, E], Awaitable[Handled]]


def message_id_of(name: str, event: Event) -> str:
    """The event's identity (the first open of one email), else the sender's id, else one
    derived from the payload: identical payloads count once."""
    own = event.identity() or event.message_id
    if own:
        return own if len(own) <= 200 else f"{name}:{_digest(own)}"
    body = event.model_dump(mode="json", exclude={"message_id"})
    return f"{name}:{_digest(json.dumps(body, sort_keys=True))}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


async def known_customer(s: AsyncSession, customer_id: str) -> Customer:
    """The customer, locked until the transaction ends."""
    customer = await repo.lock_customer(s, customer_id=customer_id)
    if customer is None:
        raise UnknownCustomer(
            f"unknown customer {customer_id!r}: send the customer's profile "
            "(identify) before their events"
        )
    return customer


async def record(s: AsyncSession, name: str, e: Event) -> bool:
    """Record the event under ``name``; False when it was recorded before."""
    return await events.record_event(
        s,
        message_id=message_id_of(name, e),
        customer_id=e.customer_id,
        name=name,
        properties=e.recorded(),
        occurred_at=e.occurred_at,
    )


async def in_transaction(
    sessions: SessionFactory, work: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """Run ``work`` in one transaction, again when PostgreSQL asks for it (a deadlock).
    A store that cannot be reached raises ``OperationalError`` (a ``DBAPIError``), also
    where the driver's own connection error would escape SQLAlchemy (asyncpg's refused
    connection): the HTTP API answers 503 to it. Within ``settled_together`` ``work`` runs
    in the batch's transaction (committed, or retried, with the whole batch)."""
    batch = _TOGETHER.get()
    if batch is not None and batch.session is not None:
        return await work(batch.session)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with sessions.begin() as s:
                return await work(s)
        except DBAPIError as exc:
            code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
            if code not in RETRY_SQLSTATES or attempt == ATTEMPTS:
                raise
        except OSError as exc:
            raise OperationalError("connecting to the store", None, exc) from exc
    raise AssertionError("unreachable")


async def handle(ingest: Ingest, name: str, handler: Handler[E], e: E) -> EventResult:
    """Record ``e`` as ``name`` and run its handler in one transaction; then deliver."""
    source = message_id_of(name, e)
    calls: list[Call] = []

    async def work(s: AsyncSession) -> Handled:
        if not await record(s, name, e):
            return Handled("none", e.concerns(), recorded=False)
        call = Call(s, await known_customer(s, e.customer_id), ingest, source)
        calls[:] = [call]
        return await handler(call, e)

    handled = await in_transaction(ingest.sessions, work)
    rows = calls[0].work if calls and handled.recorded else []
    return await settle(ingest, e.customer_id, rows, handled)


async def settle(ingest: Ingest, customer_id: str, rows: list[int], h: Handled) -> EventResult:
    """Deliver the committed work now if Temporal takes it in time; the result says so.
    Within ``settled_together`` the delivery waits for the end of the batch instead."""
    together = _TOGETHER.get()
    if together is not None and rows:
        return together.later(customer_id, rows, h)
    return _result(h, await ingest.relay.settle(customer_id, rows))


def _result(h: Handled, took: dict[int, bool] | None) -> EventResult:
    if took is None:
        action = "queued"
    elif isinstance(h.action, Took):
        action = h.action.yes if any(took.values()) else h.action.no
    else:
        action = h.action
    return EventResult(recorded=h.recorded, workflow_id=h.workflow_id, action=action)


# How long a batch's answer waits for Temporal to take its work (then "queued": the relay
# delivers it). Short: a batch is accepted once committed, at the store's pace, not at
# Temporal's; a few calls are still answered "started" when Temporal is quick.
BATCH_ANSWER_WITHIN = 1.0


class Together:
    """A batch's calls in one transaction, and their Temporal work delivered once it is
    committed: every customer's rows at once (each customer's in order), waiting
    ``BATCH_ANSWER_WITHIN`` at most for all of them together, where one call after another
    would wait for each. The products the calls saw are written at the end of the
    transaction, once each, in SKU order (``Call.products_seen``)."""

    def __init__(self) -> None:
        self.session: AsyncSession | None = None  # the batch's, while its transaction is open
        self.seen = products.Seen()
        self._later: list[tuple[EventResult, str, list[int], Handled]] = []

    def begin(self, s: AsyncSession) -> None:
        """A (new) attempt at the batch's transaction: nothing of an earlier one is kept."""
        self.session, self.seen, self._later = s, products.Seen(), []

    def later(self, customer_id: str, rows: list[int], h: Handled) -> EventResult:
        """A stand-in result ("queued"), replaced by ``final`` once delivered."""
        stand_in = EventResult(recorded=h.recorded, workflow_id=h.workflow_id, action="queued")
        self._later.append((stand_in, customer_id, rows, h))
        return stand_in

    async def deliver(self, ingest: Ingest) -> dict[int, EventResult]:
        """Deliver; the final result of each stand-in (by its ``id``)."""
        per_customer: dict[str, list[int]] = {}
        for _, customer_id, rows, _ in self._later:
            per_customer.setdefault(customer_id, []).extend(rows)
        within = min(ingest.relay.answer_within, BATCH_ANSWER_WITHIN)
        took = await ingest.relay.settle_all(per_customer, within=within)
        final: dict[int, EventResult] = {}
        for stand_in, customer_id, rows, h in self._later:
            theirs = took[customer_id]
            final[id(stand_in)] = _result(
                h, None if theirs is None else {r: theirs[r] for r in rows}
            )
        return final


_TOGETHER: ContextVar[Together | None] = ContextVar("settled_together", default=None)


async def settled_together(
    ingest: Ingest,
    calls: Sequence[Callable[[], Awaitable[EventResult]]],
    *,
    customers: Iterable[str] = (),
) -> list[EventResult]:
    """Run ``calls`` one after another in ONE transaction, then deliver the Temporal work of
    all of them together (``Together``). ``customers``, the ones the calls name, are locked
    first, in id order; the products the calls saw are written last, in SKU order: two
    batches at once lock shared rows in the same order and do not deadlock (one that
    does anyway, on PostgreSQL, runs again whole). A call that raises rolls the whole
    batch back: nothing of it is recorded."""
    together = Together()
    token = _TOGETHER.set(together)

    async def whole(s: AsyncSession) -> list[EventResult]:
        together.begin(s)
        try:
            await repo.lock_customers(s, customer_ids=set(customers))
            results = []
            for call in calls:
                # each call reads the store as it is after the one before, as when sent
                # alone: nothing an earlier call loaded is taken as still current
                await s.flush()
                s.expunge_all()
                results.append(await call())
            await together.seen.write(s)
            return results
        finally:
            together.session = None

    try:
        results = await in_transaction(ingest.sessions, whole)
    finally:
        _TOGETHER.reset(token)
    final = await together.deliver(ingest)
    return [final.get(id(result), result) for result in results]


def done(e: Event, action: str | Took, *, workflow_id: str | None = None) -> Handled:
    """A handled event; it names the run the event concerns unless told another."""
    return Handled(action, workflow_id or e.concerns())
