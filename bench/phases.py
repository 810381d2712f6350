"""The measurements. Each takes the running :class:`BenchStack` and returns plain numbers;
``bench/measure.py`` turns them into table rows (send throughput, (4), is in
``bench/sending.py``). Every loop is bounded in count and time.

Longer than the ~400-line guide, on purpose: one function per measurement, each bounded,
sharing the rate and wait helpers at the top.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.floor import FLOOR_WORKFLOW, BareJourney
from bench.stack import FLOOR_QUEUE, BenchStack
from core.contracts import CartChange, JourneyInput, JourneyResult
from core.ids import workflow_id
from core.starting import start_journey
from core.zones import zone_at_local_hour
from starter.api import Journeys
from testkit.data import TEE, email_for

T = TypeVar("T")

PRODUCT = {"sku": "TEE-1", "name": "Blue T-shirt", "price": 19.90, "quantity": 2}


# Where it is about noon now, so quiet hours (21:00-08:00 local by default) never defer a
# benchmark's sends, whatever the hour it runs at.
ZONE = zone_at_local_hour(12)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def run_pool(
    items: Iterable[T], concurrency: int, fn: Callable[[T], Awaitable[Any]], seconds: float
) -> None:
    """``fn`` over ``items`` with at most ``concurrency`` in flight; fails after ``seconds``."""
    it = iter(items)

    async def lane() -> None:
        for item in it:
            await fn(item)

    await asyncio.wait_for(asyncio.gather(*(lane() for _ in range(concurrency))), seconds)


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float, every: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(every)
    return await check()


async def at_steady_rate(
    ids: list[str], rate: float, one: Callable[[str], Coroutine[Any, Any, None]], seconds: float
) -> None:
    """``one(id)`` for each id, started at ``rate`` per second whatever the answers take (an
    open loop), all finished within ``seconds``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: list[asyncio.Task[None]] = []
    for i, cid in enumerate(ids):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        tasks.append(asyncio.create_task(one(cid)))
    await asyncio.wait_for(asyncio.gather(*tasks), seconds)


async def count(stack: BenchStack, query: str) -> int:
    return (await stack.client.count_workflows(query)).count


# -- entering cart recovery -------------------------------------------------------------------


async def enter(journeys: Journeys, customer_id: str) -> None:
    """What a shop backend does: record the customer, then their cart (Python starter)."""
    await journeys.customer_upserted(
        {
            "customer_id": customer_id,
            "email": email_for(customer_id),
            "first_name": "Ada",
            "last_name": "Lovelace",
            "timezone": ZONE,
        }
    )
    await journeys.cart_updated(
        {
            "customer_id": customer_id,
            "message_id": f"cart-{customer_id}",
            "checkout_url": f"https://shop.test/checkout/{customer_id}",
            "lines": [TEE],
        }
    )


@dataclass
class Throughput:
    n: int
    done: int
    per_second: float  # n / (last completion - first submission)
    submitted_per_second: float  # how fast the starter accepted them
    seconds: float


async def entry_throughput(
    stack: BenchStack, *, n: int, concurrency: int, tag: str, seconds: float
) -> Throughput:
    """Customers entering cart recovery (0 s first delay) until their first email is caught."""
    stack.catcher.clear()
    ids = [f"{tag}-{i}" for i in range(n)]
    t0 = time.time()
    await run_pool(ids, concurrency, lambda cid: enter(stack.journeys, cid), seconds)
    submitted = time.time()

    async def all_caught() -> bool:
        return all(stack.catcher.arrived(email_for(cid)) is not None for cid in ids)

    await wait_for(all_caught, seconds, 0.05)
    arrivals = [a for cid in ids if (a := stack.catcher.arrived(email_for(cid))) is not None]
    end = max(arrivals, default=time.time())
    return Throughput(
        n=n,
        done=len(arrivals),
        per_second=len(arrivals) / max(end - t0, 1e-9),
        submitted_per_second=n / max(submitted - t0, 1e-9),
        seconds=end - t0,
    )


async def floor_throughput(
    stack: BenchStack, *, n: int, concurrency: int, tag: str, seconds: float
) -> Throughput:
    """Bare workflows (signal-with-start, one no-op activity) until closed."""
    query = f"WorkflowType = '{FLOOR_WORKFLOW}' AND ExecutionStatus = 'Completed'"
    before = await count(stack, query)

    async def start(i: int) -> None:
        await stack.client.start_workflow(
            BareJourney.run,
            f"{tag}-{i}",
            id=f"{tag}-{i}",
            task_queue=FLOOR_QUEUE,
            start_signal="poke",
            start_signal_args=[f"{tag}-{i}"],
        )

    t0 = time.time()
    await run_pool(range(n), concurrency, start, seconds)
    submitted = time.time()

    async def all_closed() -> bool:
        return await count(stack, query) >= before + n

    await wait_for(all_closed, seconds, 0.1)
    closes = [
        wf.close_time.timestamp()
        async for wf in stack.client.list_workflows(query)
        if wf.id.startswith(f"{tag}-") and wf.close_time is not None
    ]
    end = max(closes, default=time.time())
    return Throughput(
        n=n,
        done=len(closes),
        per_second=len(closes) / max(end - t0, 1e-9),
        submitted_per_second=n / max(submitted - t0, 1e-9),
        seconds=end - t0,
    )


# -- event -> email through the HTTP API ------------------------------------------------------


def checkout_started(cid: str) -> dict[str, Any]:
    """The customer's ``Checkout Started`` track call (Segment's spec), one product."""
    return {
        "userId": cid,
        "event": "Checkout Started",
        "messageId": f"checkout-{cid}",
        "properties": {
            "currency": "EUR",
            "checkout_url": f"https://shop.test/checkout/{cid}",
            "products": [PRODUCT],
        },
    }


@dataclass
class Latency:
    n: int
    done: int
    rate: float
    seconds: list[float]  # one per completed item
    http_seconds: list[float]  # HTTP answer times
    errors: int = 0


async def event_to_email(
    stack: BenchStack, *, rate: float, n: int, concurrency: int, tag: str, seconds: float
) -> Latency:
    """``Checkout Started`` via POST /v1/track at a steady ``rate`` (open loop) for customers
    identified beforehand; latency = the catcher accepting reminder_1 (0 s delay) minus the
    moment the request was sent."""
    ids = [f"{tag}-{i}" for i in range(n)]
    await run_pool(
        ids,
        concurrency,
        lambda cid: stack.journeys.customer_upserted(
            {"customer_id": cid, "email": email_for(cid), "first_name": "Ada", "timezone": ZONE}
        ),
        seconds,
    )
    stack.catcher.clear()
    sent: dict[str, float] = {}
    http_seconds: list[float] = []
    errors = 0

    async def one(cid: str) -> None:
        nonlocal errors
        t = time.time()
        sent[cid] = t
        answer = await stack.http.post("/v1/track", json=checkout_started(cid))
        http_seconds.append(time.time() - t)
        if answer.status_code != 200:
            errors += 1

    await at_steady_rate(ids, rate, one, seconds)

    async def all_caught() -> bool:
        return all(stack.catcher.arrived(email_for(cid)) is not None for cid in ids)

    await wait_for(all_caught, seconds, 0.05)
    latencies = [
        a - sent[cid] for cid in ids if (a := stack.catcher.arrived(email_for(cid))) is not None
    ]
    return Latency(
        n=n,
        done=len(latencies),
        rate=rate,
        seconds=latencies,
        http_seconds=http_seconds,
        errors=errors,
    )


# -- purchase -> exit -------------------------------------------------------------------------


async def purchase_to_exit(
    stack: BenchStack, *, n: int, rate: float, concurrency: int, tag: str, seconds: float
) -> tuple[Latency, str]:
    """Customers waiting for reminder_1 (cart_recovery.toml as shipped: 1 h); ``Order
    Completed`` via POST /v1/track at ``rate``; latency = ``handle.result()`` returned (the run
    is closed) minus the moment the request was sent. Returns one closed run's id too."""
    waiting = "JourneyStep = 'waiting:reminder_1' AND ExecutionStatus = 'Running'"
    before = await count(stack, waiting)
    ids = [f"{tag}-{i}" for i in range(n)]
    await run_pool(ids, concurrency, lambda cid: enter(stack.waiting_journeys, cid), seconds)

    async def all_waiting() -> bool:
        return await count(stack, waiting) >= before + n

    await wait_for(all_waiting, seconds, 0.2)
    latencies: list[float] = []
    http_seconds: list[float] = []
    errors = 0

    async def one(cid: str) -> None:
        nonlocal errors
        handle = stack.client.get_workflow_handle(
            workflow_id("cart_recovery", cid), result_type=JourneyResult
        )
        t = time.time()
        answer = await stack.http.post(
            "/v1/track",
            json={
                "userId": cid,
                "event": "Order Completed",
                "messageId": f"order-{cid}",
                "properties": {"order_id": f"o-{cid}", "total": 39.80, "currency": "EUR"},
            },
        )
        http_seconds.append(time.time() - t)
        try:
            result = await asyncio.wait_for(handle.result(), 30)
        except TimeoutError:
            errors += 1
            return
        if answer.status_code != 200 or result.outcome != "ordered":
            errors += 1
            return
        latencies.append(time.time() - t)

    await at_steady_rate(ids, rate, one, seconds)
    return (
        Latency(
            n=n,
            done=len(latencies),
            rate=rate,
            seconds=latencies,
            http_seconds=http_seconds,
            errors=errors,
        ),
        workflow_id("cart_recovery", ids[0]),
    )


# -- footprint --------------------------------------------------------------------------------


@dataclass
class FootprintPoint:
    sleeping: int
    worker_rss_mib: float
    worker_peak_mib: float
    server_rss_mib: float
    temporal_db_mib: float
    start_per_second: float


async def footprint(
    stack: BenchStack,
    *,
    sizes: tuple[int, ...],
    concurrency: int,
    tag: str,
    seconds: float,
    settle: float,
    rss: Callable[[], tuple[float, float, float]],
) -> list[FootprintPoint]:
    """Cart recovery runs sleeping until their first reminder (1 h, as shipped), started the
    way the starter starts them (same input, id, start signal, search attributes), measured
    once the worker has taken every run's first task."""
    config = stack.waiting_journeys.config("cart_recovery")
    waiting = "JourneyStep = 'waiting:reminder_1' AND ExecutionStatus = 'Running'"
    before = await count(stack, waiting)
    worker_rss, worker_peak, server_rss = rss()
    points = [
        FootprintPoint(
            0, worker_rss, worker_peak, server_rss, stack.temporal_db_bytes() / 2**20, math.nan
        )
    ]

    async def start(i: int) -> None:
        cid = f"{tag}-{i}"
        await start_journey(
            stack.client,
            JourneyInput(customer_id=cid, config=config),
            task_queue=stack.settings.temporal_task_queue,
            signal=("cart_updated", CartChange()),
        )

    started = 0
    for size in sizes:
        t0 = time.time()
        await run_pool(range(started, size), concurrency, start, seconds)

        async def all_waiting(size: int = size) -> bool:
            return await count(stack, waiting) >= before + size

        await wait_for(all_waiting, seconds, 0.5)
        rate = (size - started) / (time.time() - t0)
        started = size
        await asyncio.sleep(settle)
        worker_rss, worker_peak, server_rss = rss()
        points.append(
            FootprintPoint(
                await count(stack, waiting) - before,
                worker_rss,
                worker_peak,
                server_rss,
                stack.temporal_db_bytes() / 2**20,
                rate,
            )
        )
    return points


# -- history size -----------------------------------------------------------------------------


async def history_events(stack: BenchStack, *, seconds_for_7_days: float, tag: str) -> int:
    """One cart recovery run on its full path (five emails, outcome completed), its delays
    shrunk so that 7 days take ``seconds_for_7_days``; the number of history events."""
    journeys = stack.journeys_with(journey_speedup=7 * 86400 / seconds_for_7_days)
    cid = f"{tag}-full"
    await enter(journeys, cid)
    handle = stack.client.get_workflow_handle(
        workflow_id("cart_recovery", cid), result_type=JourneyResult
    )
    result = await asyncio.wait_for(handle.result(), seconds_for_7_days + 60)
    steps = journeys.config("cart_recovery").steps
    if result.outcome != "completed" or len(result.sent) != len(steps):
        raise RuntimeError(f"the full path ended {result.outcome} after sending {result.sent}")
    return len((await handle.fetch_history()).events)


async def events_of(stack: BenchStack, wf_id: str) -> int:
    return len((await stack.client.get_workflow_handle(wf_id).fetch_history()).events)
