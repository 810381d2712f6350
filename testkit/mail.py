"""Reading what the catcher caught, and taking it down for a while."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

from devstack.catcher import MailCatcher
from testkit.data import email_for
from testkit.waiting import PATIENCE, eventually


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


@contextmanager
def smtp_outage(catcher: MailCatcher) -> Iterator[None]:
    """The catcher is down inside the block: connections to its port are refused. The port
    stays bound meanwhile (not listening), so no other socket on the machine (an outgoing
    connection of a second suite, say) can take it before the catcher comes back."""
    catcher.stop()
    hold = socket.socket()
    try:
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hold.bind((catcher.host, catcher.port))
        yield
    finally:
        hold.close()
        catcher.start()
