"""An SMTP relay the fault suite controls: it accepts, refuses connections, answers given
codes at RCPT or AUTH, or drops the line right after the final dot or right after its 250.

Every message it takes is kept with its Message-ID and arrival time: a message counts as
delivered once the relay has the whole of it (the final dot was read), whatever the client
heard back; that is what a real relay would pass on.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

USER, PASSWORD = "journeys", "relay-password"

# AUTH without TLS is what this loopback relay wants; aiosmtpd's warnings say it each time.
warnings.filterwarnings("ignore", module="aiosmtpd")
logging.getLogger("mail.log").setLevel(logging.ERROR)


@dataclass
class Delivery:
    message_id: str
    rcpt: str
    at: float  # wall clock (time.time())
    journey_step: str


@dataclass
class Mode:
    """What the relay does now; the suite flips these while journeys run."""

    refusing: bool = False  # new connections are reset at once (connection refused)
    rcpt_reply: str | None = None  # e.g. "554 5.7.1 Relay access denied"
    auth_fails: bool = False  # 535 5.7.8 at AUTH
    drop_after_dot: int = 0  # the next N messages: read them whole, then hang up unanswered
    drop_after_250: int = 0  # the next N messages: answer 250, then hang up at once


@dataclass
class Relay:
    port: int
    mode: Mode = field(default_factory=Mode)
    deliveries: list[Delivery] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sessions: set[SMTP] = field(default_factory=set)  # connections open now
    _controller: Controller | None = None

    def start(self) -> None:
        self._controller = _Controller(
            self,
            _Handler(self),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self._authenticate,
            auth_require_tls=False,
            auth_required=True,
        )
        self._controller.start()

    def stop(self) -> None:
        """Stop listening and close every connection, in the middle of a transaction or not."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def hang_up_idle(self) -> None:
        """Close every connection not in the middle of a mail transaction, as a relay closes
        idle sessions: their clients must connect (and log in) again. A transaction under
        way finishes: hanging up after its final dot would be a relay crash, whose sends are
        uncertain by nature ("drop after the dot" is that fault)."""
        controller = self._controller
        if controller is None:
            return

        def hang_up() -> None:  # in the relay's loop: no command is handled meanwhile
            with self._lock:
                idle = [s for s in self._sessions if s.envelope is None or not s.envelope.mail_from]
            for session in idle:
                if isinstance(session.transport, asyncio.Transport):
                    session.transport.abort()

        controller.loop.call_soon_threadsafe(hang_up)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mech: str, data: Any) -> Any:
        ok = (
            not self.mode.auth_fails
            and getattr(data, "login", b"") == USER.encode()
            and getattr(data, "password", b"") == PASSWORD.encode()
        )
        # handled=False: aiosmtpd answers a refusal itself (535 5.7.8), as a relay does; with
        # the default it waits for the authenticator to answer, and the client times out.
        return AuthResult(success=ok, handled=False)

    def record(self, content: bytes, rcpts: list[str]) -> None:
        msg = email.message_from_bytes(content, policy=email.policy.compat32)
        mid = str(msg.get("Message-ID", "")).strip()
        step = str(msg.get("X-Journey", ""))
        with self._lock:
            for rcpt in rcpts:
                self.deliveries.append(Delivery(mid, rcpt, time.time(), step))

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(d.message_id for d in self.deliveries)


class _Handler:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.relay.mode.rcpt_reply:
            return self.relay.mode.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.relay.record(bytes(envelope.content), list(envelope.rcpt_tos))
        mode = self.relay.mode
        if mode.drop_after_dot > 0:
            mode.drop_after_dot -= 1
            server.transport.abort()  # the relay has it; the client never hears back
            return "250 OK"
        if mode.drop_after_250 > 0:
            mode.drop_after_250 -= 1
            asyncio.get_running_loop().call_later(0.01, server.transport.abort)
        return "250 OK"


class _Session(SMTP):
    """One connection: reset at once while the relay refuses connections, and known to the
    relay while open (``hang_up_idle``)."""

    def __init__(self, relay: Relay, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._relay = relay
        self._refused = False

    def connection_made(self, transport: Any) -> None:
        if self._relay.mode.refusing:
            self._refused = True
            transport.abort()
            return
        super().connection_made(transport)
        with self._relay._lock:
            self._relay._sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:  # never a session
            return
        with self._relay._lock:
            self._relay._sessions.discard(self)
        super().connection_lost(error)


class _Controller(Controller):
    def __init__(self, relay: Relay, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._relay = relay

    def factory(self) -> SMTP:
        return _Session(self._relay, self.handler, **self.SMTP_kwargs)
