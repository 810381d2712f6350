"""Sends paced per mailbox provider, the engaged first (core/pacing.py holds the rules).

One lane per provider group (and one per domain outside the known groups, each at the
``other`` rate): one send at a time takes the lane's next slot from a leaky
bucket (aiolimiter, capacity 1, so sends are spaced ``1 / rate`` seconds apart, no bursts),
and while several wait the lowest :func:`core.pacing.engagement_rank` goes first, then the
earliest. A send waits before it takes an SMTP connection (a paced send holds nothing the
others need) and at most ``max_wait`` seconds; then :class:`Paced` is raised, which the send
activity turns into a benign retry: held, not dropped.

Per worker process: with W workers the provider sees at most W times the configured rate.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiolimiter import AsyncLimiter

from core.pacing import DEFAULT_RATES, provider_of


class Paced(Exception):
    """The send waited ``max_wait`` seconds for its provider's lane."""

    def __init__(self, provider: str, waited: float) -> None:
        super().__init__(f"paced: {provider} sends are queued; waited {waited:.0f} s")
        self.provider = provider


class _Lane:
    def __init__(self, rate: float) -> None:
        self.limiter = AsyncLimiter(1, 1.0 / rate)
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.busy = False
        self.waiting = 0

    @asynccontextmanager
    async def turn(self, rank: int) -> AsyncIterator[None]:
        """Held while this send takes its slot; lower ``rank`` first, then arrival order."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (rank, next(self._seq), fut))
        self.waiting += 1
        self._next()
        try:
            await fut
        except BaseException:
            self.waiting -= 1
            if fut.done() and not fut.cancelled():  # its turn came as it was cancelled
                self.busy = False
                self._next()
            else:
                fut.cancel()  # skipped by _next
            raise
        self.waiting -= 1
        try:
            yield
        finally:
            self.busy = False
            self._next()

    def _next(self) -> None:
        while not self.busy and self._queue:
            _, _, fut = heapq.heappop(self._queue)
            if not fut.done():
                self.busy = True
                fut.set_result(None)


class Pacer:
    """``rates``: messages per second per provider group (core.pacing.parse_rates)."""

    def __init__(self, rates: dict[str, float] | None = None, *, max_wait: float = 60.0) -> None:
        self._rates = dict(rates or DEFAULT_RATES)
        self._lanes: dict[str, _Lane] = {}
        self._max_wait = max_wait

    def _lane(self, key: str) -> _Lane:
        if key not in self._lanes:
            rate = self._rates.get(key, self._rates.get("other", DEFAULT_RATES["other"]))
            self._lanes[key] = _Lane(rate)
        return self._lanes[key]

    def contended(self, address: str) -> bool:
        """Another send holds or waits for the lane of ``address``'s provider now (so the
        order among them matters; an idle lane lets a send through at once)."""
        lane = self._lanes.get(lane_of(address))
        return lane is not None and (lane.busy or lane.waiting > 0)

    async def wait(self, address: str, *, rank: int) -> None:
        """Returns when this send to ``address`` may go; raises :class:`Paced` after
        ``max_wait`` seconds."""
        key = lane_of(address)
        lane = self._lane(key)
        try:
            async with asyncio.timeout(self._max_wait), lane.turn(rank):
                await lane.limiter.acquire()
        except TimeoutError:
            raise Paced(key, self._max_wait) from None


def lane_of(address: str) -> str:
    """The provider group of a known mailbox provider, else the domain itself (an unknown
    company's mail server is not paced together with every other unknown one)."""
    provider = provider_of(address)
    if provider != "other":
        return provider
    return "domain:" + address.rpartition("@")[2].strip().lower().rstrip(".")
