"""An SMTP relay a test controls (aiosmtpd, in its own thread): it answers given codes at MAIL,
RCPT and after the final dot, refuses logins, drops the connection at DATA, in the middle of
the message or right after the final dot, or never answers the dot. It keeps every message it
has, replied to or not (what a real relay would pass on)."""

from __future__ import annotations

import asyncio
import threading
from asyncio import Transport
from collections import Counter
from email import message_from_bytes
from email.policy import compat32
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

from devstack.catcher import free_port


class Relay:
    """A real SMTP server whose answers and faults a test sets per sender or recipient, or
    for every recipient at once (``every_rcpt``), and whose logins it can refuse (535)."""

    def __init__(self, *, refuse_logins: bool = False) -> None:
        self.refuse_logins = refuse_logins  # AUTH answers 535 while set
        self.every_rcpt: str | None = None  # reply to every RCPT, e.g. "554 5.7.1 Relay ..."
        self.at_mail: dict[str, str] = {}  # sender -> reply to MAIL
        self.at_rcpt: dict[str, str] = {}  # recipient -> reply to RCPT
        self.after_dot: dict[str, str] = {}  # recipient -> reply, or "drop" / "hang"
        self.drop_at_data: set[str] = set()  # recipients whose DATA command drops the line
        self.kept: list[bytes] = []  # messages the relay has, replied to or not
        self.sessions: set[SMTP] = set()  # connections open now
        self.lock = threading.Lock()
        self.port = free_port()
        self._controller = _RelayController(
            self,
            hostname="127.0.0.1",
            port=self.port,
            auth_require_tls=False,
            authenticator=self._authenticate,
        )
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def open_sessions(self) -> int:
        with self.lock:
            return len(self.sessions)

    def hang_up_all(self) -> None:
        """Drop every open connection at once, from the server's side."""
        with self.lock:
            transports = [s.transport for s in self.sessions if isinstance(s.transport, Transport)]
        for transport in transports:
            self._controller.loop.call_soon_threadsafe(transport.abort)

    async def handle_MAIL(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.at_mail:
            return self.at_mail[address]
        envelope.mail_from = address
        return "250 OK"

    def delivered(self) -> Counter[str]:
        """How often the relay has each Message-ID (replied to or not)."""
        with self.lock:
            kept = list(self.kept)
        ids = (message_from_bytes(raw, policy=compat32).get("Message-ID", "") for raw in kept)
        return Counter(str(mid).strip() for mid in ids)

    def _authenticate(self, *args: Any) -> AuthResult:
        return AuthResult(success=not self.refuse_logins, handled=False)

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.every_rcpt is not None:
            return self.every_rcpt
        if address in self.at_rcpt:
            return self.at_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        answer = self.after_dot.get(envelope.rcpt_tos[0], "250 2.0.0 Ok: queued as 4XyZ")
        if answer.startswith("250") or answer in ("drop", "hang"):
            with self.lock:
                self.kept.append(envelope.original_content)
        if answer == "drop":  # the relay has the message; its reply never leaves
            assert isinstance(server.transport, Transport)
            server.transport.abort()
        if answer in ("drop", "hang"):
            await asyncio.Event().wait()  # cancelled when the connection goes
        return answer


class _RelaySMTP(SMTP):
    def __init__(self, handler: Relay, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._relay = handler

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        with self._relay.lock:
            self._relay.sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        with self._relay.lock:
            self._relay.sessions.discard(self)
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        assert self.envelope is not None
        if set(self.envelope.rcpt_tos) & self._relay.drop_at_data:
            assert isinstance(self.transport, Transport)
            self.transport.abort()
            return
        await super().smtp_DATA(arg)


class _RelayController(Controller):
    def factory(self) -> SMTP:
        return _RelaySMTP(self.handler, **self.SMTP_kwargs)
