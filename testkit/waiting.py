"""Waiting for what happens on other threads and processes (a worker, the dev server's
visibility store, the catcher), with one patience for the whole kit.

Waits poll until their condition holds and give up only after ``PATIENCE`` seconds: on a
loaded machine (a busy CI runner, two suites at once) a worker can take seconds to get to a
task, and the visibility store (search attributes, list queries) lags the runs it describes.
A wait that gives up early, or checks after a fixed sleep, fails a test that is right. A
wait whose condition holds returns at once, so patience costs nothing on an idle machine.

Only checks that something did NOT happen may sleep a fixed time first (``settle``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

PATIENCE = float(os.environ.get("TEST_PATIENCE_SECONDS", "60"))
_POLL = 0.05


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], seconds: float = PATIENCE
) -> T:
    """Poll ``probe`` until ``done`` holds for what it returns, or ``seconds`` pass; returns
    the last value either way (the caller asserts on it, so a failure shows what was seen)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = await probe()
        if done(value) or loop.time() > deadline:
            return value
        await asyncio.sleep(_POLL)


async def eventually_passes(check: Callable[[], Awaitable[T]], seconds: float = PATIENCE) -> T:
    """Run ``check`` (which reads and asserts) until it returns, or ``seconds`` pass and its
    last error is raised: for facts that hold in their own time, such as what a list query
    over the visibility store returns. Any exception counts as "not yet" (a row not there yet
    is a ``KeyError`` as often as a failed assert)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            return await check()
        except Exception:
            if loop.time() > deadline:
                raise
        await asyncio.sleep(_POLL)


async def settle(seconds: float = 0.3) -> None:
    """Give work that was just scheduled a moment before checking that something did NOT
    happen. Never before checking that something did happen: use ``eventually`` for that."""
    await asyncio.sleep(seconds)
