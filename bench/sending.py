"""(4) Send throughput: the whole send_step activity, then SmtpPool, raw aiosmtplib with
connections kept open, and a new connection per message, all against the bench's catcher.
No Temporal: the activity runs in an activity context, as the worker builds it."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from temporalio.testing import ActivityEnvironment

from bench.phases import ZONE, run_pool
from bench.stack import BenchStack
from core.contracts import SendOutcome
from core.ids import workflow_id
from core.sending import send_step_input
from store import repo
from testkit.data import TEE, email_for
from worker import build_activities, make_mailer


@dataclass
class Sends:
    n: int
    concurrency: int
    send_step: float  # emails/s, the full activity (gate, render, claim, SMTP, commit)
    send_step_sent: int
    pool: float  # emails/s through SmtpPool (connections reused)
    raw_pooled: float  # raw aiosmtplib, `concurrency` connections kept open
    per_message: float  # raw aiosmtplib, a new connection per message
    pool_connections: int
    windows_ms: list[float]  # reply-to-commit of every send_step send (the worker's log line)


async def _timed(n: int, concurrency: int, fn: Callable[[int], Awaitable[Any]], s: float) -> float:
    t0 = time.perf_counter()
    await run_pool(range(n), concurrency, fn, s)
    return n / (time.perf_counter() - t0)


async def send_throughput(stack: BenchStack, *, n: int, tag: str, seconds: float) -> Sends:
    concurrency = stack.settings.smtp_pool_size
    ids = [f"{tag}-{i}" for i in range(n)]
    now = datetime.now(UTC)
    await _customers_with_carts(stack, ids, now)
    stack.catcher.clear()
    with _windows() as windows:
        step_rate, sent = await _send_step_rate(stack, ids, now, concurrency, seconds)
    with stack.catcher.lock:
        sample: EmailMessage = stack.catcher.messages[0]
    pool = make_mailer(stack.settings)
    try:
        pool_rate = await _timed(n, concurrency, lambda _: pool.send(sample), seconds)
    finally:
        await pool.close()
    raw_rate = await _raw_pooled_rate(stack, sample, n, concurrency, seconds)
    host, port = stack.catcher.host, stack.catcher.port

    async def new_connection(_: int) -> None:
        await aiosmtplib.send(sample, hostname=host, port=port)

    per_message_rate = await _timed(n, concurrency, new_connection, seconds)
    return Sends(
        n=n,
        concurrency=concurrency,
        send_step=step_rate,
        send_step_sent=sent,
        pool=pool_rate,
        raw_pooled=raw_rate,
        per_message=per_message_rate,
        pool_connections=pool.connections_opened,
        windows_ms=windows,
    )


_WINDOW = re.compile(r"reply-to-commit ([0-9.]+) ms")


@contextmanager
def _windows() -> Iterator[list[float]]:
    """The reply-to-commit windows the send activity logs while the block runs."""
    found: list[float] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            match = _WINDOW.search(record.getMessage())
            if match:
                found.append(float(match.group(1)))

    logger = logging.getLogger("temporalio.activity")
    handler, level = Catch(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def _customers_with_carts(stack: BenchStack, ids: list[str], now: datetime) -> None:
    """Each id a customer (midday where they live) whose cart was left an hour ago."""
    for chunk in range(0, len(ids), 500):
        async with stack.sessions.begin() as s:
            for cid in ids[chunk : chunk + 500]:
                await repo.upsert_customer(
                    s, customer_id=cid, email=email_for(cid), first_name="Ada", timezone=ZONE
                )
                await repo.set_cart(
                    s,
                    customer_id=cid,
                    lines=[TEE],
                    currency="EUR",
                    checkout_url=f"https://shop.test/checkout/{cid}",
                    at=now - timedelta(hours=1),
                )


async def _send_step_rate(
    stack: BenchStack, ids: list[str], now: datetime, concurrency: int, seconds: float
) -> tuple[float, int]:
    """Emails/s through the send_step activity as the worker builds it, and how many it sent."""
    settings = stack.settings
    config = stack.journeys.config("cart_recovery")
    step = config.steps[0]
    mailer = make_mailer(settings)
    activities = build_activities(settings=settings, sessions=stack.sessions, mailer=mailer)
    send_step = next(a for a in activities if getattr(a, "__name__", "") == "send_step")
    activity_env = ActivityEnvironment()
    chain = str(uuid.uuid4())
    sent = 0

    async def one_step(i: int) -> None:
        nonlocal sent
        cid = ids[i]
        outcome: SendOutcome = await activity_env.run(
            send_step,
            # What the workflow asks the gate for this step (core.sending, the same builder).
            send_step_input(
                config,
                step,
                workflow_id=workflow_id("cart_recovery", cid),
                run_chain_id=chain,
                customer_id=cid,
                entered_at=now,
                now=now,
                requires_active_cart=True,
            ),
        )
        sent += outcome.status == "sent"

    try:
        step_rate = await _timed(len(ids), concurrency, one_step, seconds)
    finally:
        await mailer.close()
    return step_rate, sent


async def _raw_pooled_rate(
    stack: BenchStack, sample: EmailMessage, n: int, concurrency: int, seconds: float
) -> float:
    """Emails/s through raw aiosmtplib with ``concurrency`` connections kept open."""
    host, port = stack.catcher.host, stack.catcher.port
    clients = [aiosmtplib.SMTP(hostname=host, port=port) for _ in range(concurrency)]
    for c in clients:
        await c.connect()
    free: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
    for c in clients:
        free.put_nowait(c)

    async def raw_send(_: int) -> None:
        c = await free.get()
        try:
            await c.send_message(sample)
        finally:
            free.put_nowait(c)

    try:
        return await _timed(n, concurrency, raw_send, seconds)
    finally:
        for c in clients:
            await c.quit()
