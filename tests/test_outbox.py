"""What is accepted is kept: events are committed first and handed to Temporal after, by an
outbox relay that delivers in order per customer and retries until Temporal takes them."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from functools import partial
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select, update
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from core.contracts import CartChange
from core.ids import workflow_id
from core.links import Links
from devstack.catcher import free_port
from starter import outbox as relay_module
from starter.api import Journeys
from starter.http import create_app
from starter.ingest import service
from starter.ingest.service import settled_together
from store import outbox
from store.db import make_engine, make_session_factory
from store.models import Event, Outbox, Suppression, utcnow
from testkit.data import MUG, TEE, abandon_cart, add_customer, email_for
from testkit.engagement import PERSON, read_later
from testkit.live_api import serving
from testkit.mail import parts, wait_for_mail
from testkit.servers import StoppableServer
from testkit.stack import WRITE_KEY, Stack, running_stack, stack_settings
from testkit.waiting import eventually
from workflows.cart_recovery import CartRecovery


async def _pending(stack: Stack, customer_id: str | None = None) -> int:
    async with stack.sessions() as s:
        if customer_id is None:
            return await outbox.pending(s, task_queue=stack.settings.temporal_task_queue)
        return len(await outbox.rows_of(s, customer_id=customer_id))


async def _all_delivered(stack: Stack) -> None:
    assert await eventually(lambda: _pending(stack), lambda n: n == 0) == 0


class UnderWay:
    """Counts the Temporal calls under way at once (the most seen), each held ``delay``
    seconds first: how a test sees calls overlap without timing them."""

    def __init__(self, delay: float) -> None:
        self.delay, self.now, self.most = delay, 0, 0

    def wrap(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.now += 1
            self.most = max(self.most, self.now)
            try:
                await asyncio.sleep(self.delay)
                return await call(*args, **kwargs)
            finally:
                self.now -= 1

        return counted


@pytest.fixture
async def server(tmp_path) -> AsyncIterator[StoppableServer]:
    server = StoppableServer(tmp_path / "temporal.db")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_with_temporal_stopped_an_unsubscribe_and_a_cart_are_kept_and_acted_on_later(
    server, catcher, sessions, db_url, journeys_dir
):
    client = await server.connect()
    settings = stack_settings(
        database_url=db_url,
        catcher=catcher,
        journeys_dir=journeys_dir(),
        journey_speedup=360,  # the first reminder 10 s after the cart
    )
    async with running_stack(
        server.env, settings=settings, sessions=sessions, catcher=catcher, client=client
    ) as stack:
        stack.journeys.relay.answer_within = 1.0
        app = create_app(stack.settings, journeys=stack.journeys)
        transport = httpx.ASGITransport(app=app)
        http = httpx.AsyncClient(transport=transport, base_url="https://shop.test")
        gone, buyer, late = (
            f"{name}-{settings.temporal_task_queue}" for name in ("gone", "buyer", "late")
        )
        for cid in (gone, buyer, late):
            await add_customer(stack, cid)
        await abandon_cart(stack, gone, TEE)
        await abandon_cart(stack, buyer, TEE)

        await server.stop()
        links = Links(base_url=settings.public_base_url, secret=settings.secret_key)
        path = links.unsubscribe(customer_id=gone, journey="cart_recovery")
        began = time.monotonic()
        answer = await http.post(
            path.replace("https://shop.test", ""),
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - began < 5  # not Temporal's ten seconds of retries
        cart = await stack.journeys.cart_updated({"customer_id": late, "lines": [TEE]})
        assert cart.recorded and cart.action == "queued"
        # A cart change, then an order: the run must hear them in this order.
        await stack.journeys.product_added({"customer_id": buyer, **MUG})
        await stack.journeys.order_placed(
            {"customer_id": buyer, "order_id": f"o-{buyer}", "total": "48.30"}
        )
        async with stack.sessions() as s:  # the send gate reads this from the commit on
            assert (await s.get(Suppression, email_for(gone))) is not None
        assert await _pending(stack, late) == 1

        await server.start()
        (mail,) = await wait_for_mail(catcher, email_for(late), 1)
        assert mail["X-Journey"] == "cart_recovery/reminder_1"
        bought = client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{buyer}")
        assert (await asyncio.wait_for(bought.result(), timeout=60)).outcome == "ordered"
        await _all_delivered(stack)
        described = await bought.describe()  # no second run started after the order
        assert described.status == WorkflowExecutionStatus.COMPLETED
        left = client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{gone}")
        assert (await asyncio.wait_for(left.result(), timeout=60)).outcome == "unsubscribed"
        assert catcher.to(email_for(gone)) == []
        await http.aclose()


async def test_work_a_process_left_in_the_outbox_is_delivered_in_order_by_the_next(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    nowhere = await Client.connect(
        f"127.0.0.1:{free_port()}", lazy=True, data_converter=pydantic_data_converter
    )
    first = Journeys(
        client=nowhere, sessions=stack.sessions, settings=stack.settings, answer_within=0.2
    )
    cart = await first.cart_updated({"customer_id": cid, "lines": [TEE]})
    order = await first.order_placed({"customer_id": cid, "order_id": f"o-{cid}", "total": "39.80"})
    assert (cart.action, order.action) == ("queued", "queued")
    await first.relay.close(grace=0)  # the process ends; its rows are free at once

    handle = stack.client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{cid}")
    await _all_delivered(stack)  # by the stack's relay, started by running_stack
    result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.outcome == "ordered" and result.sent == []
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_a_row_temporal_took_is_deleted_even_when_the_relay_stops_right_after(stack):
    """The relay deletes a delivered row with its claim of the next one; a relay told to
    stop between the two still deletes it (left leased, it would go to Temporal again)."""
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    journeys = Journeys(client=stack.client, sessions=stack.sessions, settings=stack.settings)
    relay, runs = journeys.ingest.relay, journeys.ingest.runs
    start = runs.start

    async def then_stop(*args: Any, **kwargs: Any) -> Any:
        taken = await start(*args, **kwargs)
        relay._closing = True  # close() arrives while the run is being started
        return taken

    runs.start = then_stop  # type: ignore[method-assign]
    cart = await journeys.cart_updated({"customer_id": cid, "lines": [TEE]})

    assert cart.action == "started_or_signalled"
    assert await _pending(stack, cid) == 0
    handle = stack.client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{cid}")
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await handle.terminate("test done")


async def test_past_the_deliveries_under_way_an_event_is_answered_at_once_and_delivered_later(
    stack, monkeypatch
):
    """A burst (more deliveries under way than ``SETTLING_MAX``): the caller does not wait
    for Temporal; the relay's loop delivers the work, in order."""
    monkeypatch.setattr(relay_module, "SETTLING_MAX", 0)
    cid = stack.new_customer_id()
    await add_customer(stack, cid)

    cart = await stack.journeys.cart_updated({"customer_id": cid, "lines": [TEE]})

    assert cart.action == "queued"
    await _all_delivered(stack)
    handle = stack.client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{cid}")
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await handle.terminate("test done")


async def test_a_signal_to_a_run_that_does_not_exist_counts_as_delivered(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    result = await stack.journeys.order_shipped({"customer_id": cid, "order_id": f"o-{cid}"})
    assert result.action == "recorded"  # delivered: nobody was listening
    assert await _pending(stack, cid) == 0


async def test_a_row_temporal_can_never_take_is_parked_and_the_next_one_goes(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    async with stack.sessions.begin() as s:
        await outbox.enqueue(
            s,
            task_queue=stack.settings.temporal_task_queue,
            customer_id=cid,
            kind="signal",
            workflow_id=f"cart-recovery:{cid}",
            payload={"name": "cart_updated", "arg": {"type": "NoSuchContract", "value": {}}},
            source="broken",
        )
    result = await stack.journeys.cart_updated({"customer_id": cid, "lines": [TEE]})
    assert result.action == "started_or_signalled"
    async with stack.sessions() as s:
        (parked,) = await outbox.rows_of(s, customer_id=cid)
    assert parked.parked_at is not None and "NoSuchContract" in str(parked.last_error)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_no_transaction_waits_on_temporal(stack, monkeypatch):
    """Eight events of eight customers while every Temporal call takes 0.5 s: on SQLite a
    transaction held across a call would hold the one write lock, so the calls would go one
    at a time; with none held they overlap (counted while they are under way, not timed)."""
    runs = stack.journeys.ingest.runs
    calls = UnderWay(0.5)
    monkeypatch.setattr(runs, "start", calls.wrap(runs.start))
    monkeypatch.setattr(runs, "signal", calls.wrap(runs.signal))
    customers = [stack.new_customer_id() for _ in range(8)]
    for cid in customers:
        await add_customer(stack, cid)
    results = await asyncio.gather(
        *(stack.journeys.cart_updated({"customer_id": c, "lines": [TEE]}) for c in customers)
    )
    assert [r.action for r in results] == ["started_or_signalled"] * 8
    assert calls.most > 1, "Temporal calls went one at a time: something holds a transaction"


async def test_fifty_loads_of_one_pixel_are_one_open_and_one_signal(http, stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    (mail,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
    _, html = parts(mail)
    pixel = re.search(r'<img src="https://shop\.test(/t/o/[^"]+)"', html)
    click = re.search(r'href="https://shop\.test(/t/c/[^"]+)"', html)
    assert pixel and click

    await read_later(stack, cid)  # a person's opens and clicks, not a scanner's at delivery
    for _ in range(50):
        assert (await http.get(pixel.group(1), headers=PERSON)).status_code == 200
    for _ in range(3):
        assert (await http.get(click.group(1), headers=PERSON)).status_code == 302

    async with stack.sessions() as s:
        rows = (await s.scalars(select(Event).where(Event.customer_id == cid))).all()
    engagement = {e.name: e.repeats for e in rows if e.name.startswith("Email")}
    assert engagement == {"Email Opened": 49, "Email Link Clicked": 2}
    history = await handle.fetch_history()
    engaged = [
        e
        for e in history.events
        if e.workflow_execution_signaled_event_attributes.signal_name == "engaged"
    ]
    assert len(engaged) == 2  # the first open and the first click
    await handle.signal(CartRecovery.cart_updated, CartChange(empty=True))


async def test_only_a_store_that_cannot_be_reached_refuses_an_event(stack):
    """PostgreSQL down (asyncpg's refused connection): 503, so the sender sends it again."""
    engine = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere")
    journeys = Journeys(
        client=stack.client, sessions=make_session_factory(engine), settings=stack.settings
    )
    app = create_app(stack.settings, journeys=journeys)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as http:
        answer = await http.post(
            "/v1/track",
            json={"userId": "c-1", "event": "Checkout Started", "properties": {"products": []}},
            headers={"Authorization": f"Bearer {WRITE_KEY}"},
        )
    await engine.dispose()
    assert answer.status_code == 503
    assert answer.json() == {"detail": "the store is unavailable; nothing was recorded, retry"}


async def test_the_api_starts_and_accepts_events_while_temporal_is_down(stack):
    """Its client connects on first use; its relay is the one that delivers (here the
    stack's relay, on the same task queue, stands for the API once Temporal is back)."""
    settings = stack.settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    cid = stack.new_customer_id()
    headers = {"Authorization": f"Bearer {WRITE_KEY}"}
    async with serving(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as http:
        identify = {"userId": cid, "traits": {"email": email_for(cid)}}
        assert (await http.post("/v1/identify", json=identify, headers=headers)).status_code == 200
        cart = {
            "userId": cid,
            "event": "Checkout Started",
            "properties": {"products": [{"sku": "TEE-1", "name": "Blue T-shirt", "price": 19.9}]},
        }
        answer = await http.post("/v1/track", json=cart, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["action"] == "queued"
    handle = stack.client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{cid}")
    await _all_delivered(stack)
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await handle.signal(CartRecovery.cart_updated, CartChange(empty=True))


async def _enqueue(
    sessions: Any, task_queue: str, cid: str, runs: list[str], payload: dict[str, Any] | None = None
) -> list[int]:
    async with sessions.begin() as s:
        return [
            await outbox.enqueue(
                s,
                task_queue=task_queue,
                customer_id=cid,
                kind="signal",
                workflow_id=f"{run}:{cid}",
                payload=payload or {},
                source="test",
            )
            for run in runs
        ]


async def _waves(
    sessions: Any,
    task_queue: str,
    cids: list[str],
    owner: str = "relay-a",
    limit: int = outbox.WAVE_MAX,
) -> dict[str, list[int]]:
    async with sessions.begin() as s:
        waves = await outbox.claim_waves(
            s,
            task_queue=task_queue,
            customer_ids=cids,
            owner=owner,
            now=utcnow(),
            lease=relay_module.LEASE,
            limit=limit,
        )
    return {cid: [row.id for row in rows] for cid, rows in waves.items()}


async def _wave(sessions: Any, task_queue: str, cid: str, owner: str = "relay-a") -> list[int]:
    return (await _waves(sessions, task_queue, [cid], owner)).get(cid, [])


async def _delivered(sessions: Any, row_ids: list[int]) -> None:
    async with sessions.begin() as s:
        await outbox.delivered(s, row_ids=row_ids)


async def test_a_wave_is_the_head_and_the_rows_after_it_each_for_another_run(sessions):
    """Rows for runs a, b, a, c: the first wave is a and b (the second a waits for the
    first); once those are delivered, a and c. Another owner sees none of a leased wave."""
    queue, cid = f"tq-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:12]}"
    a1, b, a2, c = await _enqueue(sessions, queue, cid, ["a", "b", "a", "c"])

    assert await _wave(sessions, queue, cid) == [a1, b]
    assert await _wave(sessions, queue, cid, owner="relay-b") == []  # leased to relay-a
    await _delivered(sessions, [a1, b])
    assert await _wave(sessions, queue, cid) == [a2, c]


async def test_a_wave_ends_before_a_row_held_by_another_or_waiting_to_be_retried(sessions):
    queue, cid = f"tq-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:12]}"
    a, b, c, d = await _enqueue(sessions, queue, cid, ["a", "b", "c", "d"])
    async with sessions.begin() as s:
        await s.execute(  # b is another relay's for now
            update(Outbox)
            .where(Outbox.id == b)
            .values(lease_owner="relay-b", lease_until=utcnow() + timedelta(minutes=1))
        )
        await outbox.retry_later(s, row_id=d, error="busy", at=utcnow() + timedelta(minutes=1))

    assert await _wave(sessions, queue, cid) == [a]
    await _delivered(sessions, [a])
    assert await _wave(sessions, queue, cid) == []  # the head (b) is held by relay-b
    async with sessions.begin() as s:
        await s.execute(  # relay-b died: its lease ran out
            update(Outbox).where(Outbox.id == b).values(lease_until=utcnow() - timedelta(seconds=1))
        )
    assert await _wave(sessions, queue, cid) == [b, c]  # d waits to be retried


async def test_one_claim_leases_the_waves_of_many_customers_each_as_alone(sessions):
    """Three customers in one claim: each gets the wave it would get alone (runs a, b then
    a again: a and b; a head held by another relay: none; more rows than the limit: the
    limit), and another owner sees none of what was leased."""
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    one, held, many = (f"c-{uuid.uuid4().hex[:12]}" for _ in range(3))
    a1, b, _ = await _enqueue(sessions, queue, one, ["a", "b", "a"])
    (h, _) = await _enqueue(sessions, queue, held, ["a", "b"])
    lots = await _enqueue(sessions, queue, many, [f"r{i}" for i in range(5)])
    async with sessions.begin() as s:
        await s.execute(
            update(Outbox)
            .where(Outbox.id == h)
            .values(lease_owner="relay-b", lease_until=utcnow() + timedelta(minutes=1))
        )

    customers = [many, one, held]
    assert await _waves(sessions, queue, customers, "relay-a", limit=3) == {
        one: [a1, b],
        many: lots[:3],
    }
    assert await _waves(sessions, queue, customers, "relay-c", limit=3) == {}  # all leased


async def test_a_batchs_customers_go_to_temporal_in_two_transactions_not_two_each(
    stack, monkeypatch
):
    """A batch of twenty customers' carts: its own transaction, then one that leases all
    twenty customers' rows and one that deletes them once Temporal took them (counted as
    the store sees them begin; one by one it was forty more)."""
    monkeypatch.setattr(service, "BATCH_ANSWER_WITHIN", 30.0)  # a slow start: not queued
    customers = [stack.new_customer_id() for _ in range(20)]
    for cid in customers:
        await add_customer(stack, cid)
    await stack.journeys.relay.close(grace=0)  # the stack's loop stays out of this batch
    engine = make_engine(stack.settings.database_url)  # the batch's and its relay's alone
    begun: list[object] = []

    @event.listens_for(engine.sync_engine, "begin")
    def count(conn: object) -> None:
        begun.append(conn)

    sessions = make_session_factory(engine)
    journeys = Journeys(client=stack.client, sessions=sessions, settings=stack.settings)
    calls = [partial(journeys.cart_updated, {"customer_id": c, "lines": [TEE]}) for c in customers]
    try:
        results = await settled_together(journeys.ingest, calls, customers=customers)
    finally:
        await engine.dispose()

    assert [r.action for r in results] == ["started_or_signalled"] * 20
    assert [await _pending(stack, cid) for cid in customers] == [0] * 20
    assert len(begun) == 3, f"{len(begun)} transactions for a batch of 20 customers"
    for cid in customers:
        handle = stack.client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{cid}")
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        await handle.terminate("test done")


async def test_a_customer_temporal_refuses_in_a_group_stops_alone(stack, monkeypatch):
    """Three customers delivered together; Temporal refuses the second one's run for now:
    the first and the third are delivered, the second's row waits to be retried."""
    monkeypatch.setattr(service, "BATCH_ANSWER_WITHIN", 30.0)
    customers = [stack.new_customer_id() for _ in range(3)]
    for cid in customers:
        await add_customer(stack, cid)
    await stack.journeys.relay.close(grace=0)
    journeys = Journeys(client=stack.client, sessions=stack.sessions, settings=stack.settings)
    runs = journeys.ingest.runs
    start, refused = runs.start, customers[1]

    async def busy_for_one(inp: Any, *args: Any, **kwargs: Any) -> Any:
        if inp.customer_id == refused:
            raise RPCError("busy", RPCStatusCode.RESOURCE_EXHAUSTED, b"")
        return await start(inp, *args, **kwargs)

    monkeypatch.setattr(runs, "start", busy_for_one)
    calls = [partial(journeys.cart_updated, {"customer_id": c, "lines": [TEE]}) for c in customers]
    results = await settled_together(journeys.ingest, calls, customers=customers)

    assert [r.action for r in results] == ["started_or_signalled", "queued", "started_or_signalled"]
    assert [await _pending(stack, cid) for cid in customers] == [0, 1, 0]
    async with stack.sessions() as s:
        (row,) = await outbox.rows_of(s, customer_id=refused)
    assert row.attempts == 1 and row.lease_owner is None and "busy" in str(row.last_error)
    for cid in (customers[0], customers[2]):
        handle = stack.client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{cid}")
        await handle.terminate("test done")


async def test_a_customer_done_with_is_given_back_while_its_group_goes_on(stack, monkeypatch):
    """Two customers delivered together: ``one`` has a row, ``two`` two rows for the same
    run (two rounds), its second held up at Temporal. Meanwhile ``one``'s next event is
    delivered at once: ``one`` was given back after the first round, not kept until the
    group ended (its answer would be None: not delivered while it waited in line)."""
    await stack.journeys.relay.close(grace=0)
    journeys = Journeys(client=stack.client, sessions=stack.sessions, settings=stack.settings)
    runs, relay = journeys.ingest.runs, journeys.ingest.relay
    queue = stack.settings.temporal_task_queue
    one, two = f"c-{uuid.uuid4().hex[:12]}", f"c-{uuid.uuid4().hex[:12]}"
    cart_changed = relay_module.signal_payload("cart_updated", CartChange())

    async def signals(cid: str, runs_: list[str]) -> list[int]:
        return await _enqueue(stack.sessions, queue, cid, runs_, cart_changed)

    (a1,) = await signals(one, ["a"])
    b1, b2 = await signals(two, ["b", "b"])
    signal, held, go_on = runs.signal, asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    async def second_held(wf_id: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(wf_id)
        if wf_id == f"b:{two}" and calls.count(wf_id) == 2:
            held.set()
            await go_on.wait()
        return await signal(wf_id, *args, **kwargs)

    monkeypatch.setattr(runs, "signal", second_held)
    group = asyncio.create_task(relay.settle_all({one: [a1], two: [b1, b2]}, within=60))
    await asyncio.wait_for(held.wait(), timeout=30)
    (a2,) = await signals(one, ["a"])
    meanwhile = await relay.settle(one, [a2], within=10)
    go_on.set()

    assert meanwhile == {a2: False}  # delivered (nobody listening on a made-up run)
    assert await group == {one: {a1: False}, two: {b1: False, b2: False}}
    assert await _pending(stack, one) == 0 and await _pending(stack, two) == 0


async def test_an_orders_work_for_different_runs_goes_to_temporal_together_and_a_runs_in_order(
    stack, monkeypatch
):
    """An order tells each live journey (five signals, one per run) and starts the nurture:
    the five signals go to Temporal at the same time (counted while under way, not timed),
    the nurture's start after the signal to its id. A cart change and then an order for the
    same run still reach it one after the other, in that order."""
    runs = stack.journeys.ingest.runs
    start, signal = runs.start, runs.signal
    calls = UnderWay(0.2)
    heard: list[tuple[str, str]] = []  # (run, signal) in the order the calls began

    async def signal_seen(wf_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        heard.append((wf_id, name))
        return await signal(wf_id, name, *args, **kwargs)

    async def start_seen(inp: Any, *args: Any, **kwargs: Any) -> Any:
        run = kwargs.get("run_id") or workflow_id(inp.config.name, inp.customer_id)
        heard.append((run, "start"))
        return await start(inp, *args, **kwargs)

    monkeypatch.setattr(runs, "start", calls.wrap(start_seen))
    monkeypatch.setattr(runs, "signal", calls.wrap(signal_seen))
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    relay = stack.journeys.relay
    await relay.close(grace=0)  # nothing delivered yet: the cart and the order go in one drain
    journeys = Journeys(client=stack.client, sessions=stack.sessions, settings=stack.settings)
    journeys.ingest.relay._closing = True  # their rows stay in the outbox
    await journeys.cart_updated({"customer_id": cid, "lines": [TEE]})
    await journeys.order_placed({"customer_id": cid, "order_id": f"o-{cid}", "total": "39.80"})
    pending = await _pending(stack, cid)
    relay.start()
    await _all_delivered(stack)

    assert pending >= 7  # the cart's start, five signals, the nurture's start
    assert calls.most >= 5, (
        f"at most {calls.most} Temporal calls under way: the rows went one by one"
    )
    cart_run, nurture = workflow_id("cart_recovery", cid), workflow_id("new_customer_nurture", cid)
    handle = stack.client.get_workflow_handle_for(CartRecovery.run, cart_run)
    result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.outcome == "ordered"  # the order came after the cart started the run
    assert heard.index((cart_run, "start")) < heard.index((cart_run, "order_placed"))
    assert heard.index((nurture, "order_placed")) < heard.index((nurture, "start"))
    nurture_handle = stack.client.get_workflow_handle(nurture)
    assert (await nurture_handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await nurture_handle.terminate("test done")


async def test_a_delivery_that_fails_in_a_wave_waits_for_the_others_before_the_relay_stops(
    stack, monkeypatch
):
    """One row of a wave fails so that the relay stops (its retry cannot be written: the
    store went away) while the others are still with Temporal: those still end, and are
    deleted, before the customer's delivery stops; only the failed row and the next wave's
    are left for later."""
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await stack.journeys.relay.close(grace=0)  # the stack's loop stays out of this customer
    journeys = Journeys(client=stack.client, sessions=stack.sessions, settings=stack.settings)
    runs, relay = journeys.ingest.runs, journeys.ingest.relay
    signal = runs.signal
    failing = workflow_id("browse_follow_up", cid)

    async def slow_or_failing(wf_id: str, *args: Any, **kwargs: Any) -> Any:
        if wf_id == failing:
            raise RuntimeError("Temporal hung up")
        await asyncio.sleep(0.5)
        return await signal(wf_id, *args, **kwargs)

    async def store_gone(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the store went away")

    monkeypatch.setattr(runs, "signal", slow_or_failing)
    monkeypatch.setattr(relay, "_retry", store_gone)
    answer = await journeys.order_placed(
        {"customer_id": cid, "order_id": f"o-{cid}", "total": "39.80"}
    )

    assert answer.action == "queued"
    async with stack.sessions() as s:
        left = [(row.kind, row.workflow_id) for row in await outbox.rows_of(s, customer_id=cid)]
    assert left == [("signal", failing), ("start", workflow_id("new_customer_nurture", cid))]
