"""Reading what the catcher caught, and waiting for things that happen on other threads.

Waits poll until their condition holds and give up only after ``PATIENCE`` seconds: on a
loaded machine (a busy CI runner, two suites at once) a worker can take seconds to get to a
task, and a wait that gives up early fails a test that is right. A wait that holds returns at
once, so patience costs nothing when the machine is idle."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import TypeVar

from devstack.catcher import MailCatcher
from testkit.data import email_for

T = TypeVar("T")

PATIENCE = float(os.environ.get("TEST_PATIENCE_SECONDS", "60"))


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
        await asyncio.sleep(0.05)


async def wait_for_mail(
    catcher: MailCatcher, address: str, count: int, seconds: float = PATIENCE
) -> list[EmailMessage]:
    """The mails to ``address`` once there are at least ``count`` (or when patience ends)."""

    async def caught() -> list[EmailMessage]:
        return catcher.to(address)

    return await eventually(caught, lambda got: len(got) >= count, seconds)


def parts(msg: EmailMessage) -> tuple[str, str]:
    """(text, html) of a multipart/alternative message."""
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage), (
        "message lacks a text or an HTML part"
    )
    return str(text.get_content()), str(html.get_content())


def journey_mails(catcher: MailCatcher, customer_id: str, journey: str) -> list[EmailMessage]:
    """The mails of one journey to the customer, in the order they arrived."""
    return [
        m
        for m in catcher.to(email_for(customer_id))
        if _journey_header(m).startswith(f"{journey}/")
    ]


def _journey_header(mail: EmailMessage) -> str:
    """X-Journey, unfolded (a long header is folded onto two lines)."""
    return "".join(str(mail["X-Journey"] or "").split())


def steps_of(mails: list[EmailMessage]) -> list[str]:
    return [_journey_header(m).split("/", 1)[1] for m in mails]


def tracked_links(html: str, kind: str = "c") -> list[str]:
    """Paths of the tracking links (kind "c": clicks, "o": the open pixel) in an HTML part."""
    return re.findall(rf'(/t/{kind}/[^"]+)"', html)


async def settle(seconds: float = 0.3) -> None:
    """Give activities that were just scheduled a moment, before checking that something did
    NOT happen (the clock does not move meanwhile). Never use it before checking that
    something did happen: wait for that with ``eventually`` or ``wait_for_mail``."""
    await asyncio.sleep(seconds)
