"""(8) Burst ingestion: a shop's Black Friday hour, compressed. ``n`` customers identified
beforehand (``/v1/batch`` of identifies, timed apart), then ``n`` cart events
(``Checkout Started``) sent as fast as the API takes them through ``POST /v1/batch``,
``per_call`` per call, ``in_flight`` calls at a time; then the wait until the journeys
caught up: the outbox empty and every customer's cart recovery started and waiting for its
first reminder.

The burst goes to an API of its own whose cart recovery is as shipped (first reminder after
1 h), so catching up is the runs starting, not 20,000 emails being sent. The reference: the
same burst into an API whose Temporal is unreachable (accepting is then the store's work
alone, everything kept in the outbox), delivered afterwards by the bench's own API.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx

from bench.phases import ZONE, checkout_started, count, wait_for
from bench.stack import BenchStack, start_api
from devstack.catcher import free_port
from settings import ROOT
from store import outbox
from testkit.data import email_for

PER_CALL = 100  # calls per /v1/batch (the issue's; API_BATCH_MAX's default)
IN_FLIGHT = 4  # batches in flight at once
WAITING = "JourneyStep = 'waiting:reminder_1' AND ExecutionStatus = 'Running'"


@dataclass(frozen=True)
class Burst:
    n: int
    identify_seconds: float  # the identifies before the burst, all batches
    accept_seconds: float  # first cart batch sent -> last answered
    statuses: dict[int, int]  # HTTP status -> batches
    failed_calls: int  # calls answered other than accepted (in 200 batches) or in non-200s
    drain_seconds: float | None  # first cart batch sent -> caught up (None: not in time)
    caught_up: int  # runs waiting for reminder_1 at the end, of n

    @property
    def per_second(self) -> float:
        return self.n / self.accept_seconds if self.accept_seconds > 0 else 0.0


async def burst(
    stack: BenchStack, *, n: int, tag: str, seconds: float, temporal: bool = True
) -> Burst:
    """The burst through an API of its own. ``temporal=False``: that API's Temporal is
    unreachable (a port nobody listens on), so accepting is the store's work alone and the
    outbox keeps everything; the bench's own API (connected) then delivers it: the
    reference that tells our cost from the journeys starting at the same time."""
    ids = [f"{tag}-{i}" for i in range(n)]
    shipped = stack.settings.model_copy(update={"journeys_dir": ROOT / "journeys"})
    if not temporal:
        shipped = shipped.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    before = await count(stack, WAITING)
    async with AsyncExitStack() as parts:
        if not temporal:  # the bench's own API (its relay) is held still meanwhile
            os.kill(stack.api.pid, signal.SIGSTOP)
            parts.callback(os.kill, stack.api.pid, signal.SIGCONT)
        _, http, _ = await start_api(
            parts, stack.workdir, shipped, name=f"burst-api-{tag}", healthy=temporal
        )
        t0 = time.monotonic()
        await _batches(http, ids, _identify, seconds)
        identify_seconds = time.monotonic() - t0

        t0 = time.monotonic()
        answers = await _batches(http, ids, _checkout, seconds)
        accept_seconds = time.monotonic() - t0
        if temporal:
            drain_seconds = await _caught_up(stack, before + n, t0, seconds)
    if not temporal:  # that API stopped, the bench's own goes on: its relay delivers the rest
        drain_seconds = await _caught_up(stack, before + n, t0, seconds)
    waiting = await count(stack, WAITING) - before
    statuses = Counter(status for status, _ in answers)
    failed = sum(bad for _, bad in answers)
    return Burst(
        n=n,
        identify_seconds=identify_seconds,
        accept_seconds=accept_seconds,
        statuses=dict(statuses),
        failed_calls=failed,
        drain_seconds=drain_seconds,
        caught_up=waiting,
    )


async def _caught_up(stack: BenchStack, waiting: int, t0: float, seconds: float) -> float | None:
    """Seconds from ``t0`` until the outbox is empty and ``waiting`` runs wait (None: not
    within ``seconds``)."""

    async def done() -> bool:
        async with stack.sessions() as s:
            if await outbox.pending(s) > 0:
                return False
        return await count(stack, WAITING) >= waiting

    return time.monotonic() - t0 if await wait_for(done, seconds, 0.5) else None


def _identify(cid: str) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": cid,
        "messageId": f"identify-{cid}",
        "traits": {"email": email_for(cid), "firstName": "Ada", "timezone": ZONE},
    }


def _checkout(cid: str) -> dict[str, Any]:
    return {"type": "track", **checkout_started(cid)}


async def _batches(
    http: httpx.AsyncClient,
    ids: list[str],
    call: Callable[[str], dict[str, Any]],
    seconds: float,
) -> list[tuple[int, int]]:
    """``ids`` as batches of ``PER_CALL`` calls, ``IN_FLIGHT`` at a time; per batch its HTTP
    status and how many of its calls were not accepted (all of them unless 200)."""
    chunks = [ids[i : i + PER_CALL] for i in range(0, len(ids), PER_CALL)]
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)
    answers: list[tuple[int, int]] = []

    async def sender() -> None:
        while not queue.empty():
            chunk = queue.get_nowait()
            try:
                answer = await http.post(
                    "/v1/batch", json={"batch": [call(cid) for cid in chunk]}, timeout=120
                )
            except httpx.HTTPError:
                answers.append((0, len(chunk)))
                continue
            if answer.status_code != 200:
                answers.append((answer.status_code, len(chunk)))
                continue
            results = answer.json().get("results", [])
            accepted = sum(1 for r in results if r.get("success") and not r.get("duplicate"))
            answers.append((200, len(chunk) - accepted))

    await asyncio.wait_for(asyncio.gather(*(sender() for _ in range(IN_FLIGHT))), seconds)
    return answers
