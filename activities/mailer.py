"""SMTP sending through a small pool of reused aiosmtplib connections.

A transaction is driven command by command (MAIL, RCPT, DATA, the message, the final dot)
rather than with ``send_message``, so the caller can act right before the final dot: until
it is written the relay discards what it has (RFC 5321 §4.1.1.4) and sending again is safe;
once it is written, a connection that drops or times out before the reply leaves the outcome
unknown (RFC 1047). Every failure is an ``SmtpFailure`` of one ``FailureKind``
(activities/smtp_replies.py).

Use::

    async with pool.connection() as conn:      # wait for one of ``size`` connections first
        ...claim the send...
        reply = await conn.send(message, before_dot=mark_about_to_dot)

Longer than the ~400-line guide, on purpose: the connection and the pool share the
classification of failures and the connection's life (open, reuse, close).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender, parse_address

from activities.render import to_wire
from activities.smtp_replies import Enhanced, FailureKind, Stage, classify, parse_enhanced

log = logging.getLogger(__name__)

# An idle connection older than this is checked with NOOP before a message goes over it, so a
# connection the server dropped is replaced before sending, never in the middle of a send.
_IDLE_CHECK_SECONDS = 5.0
# RFC 5321 §4.5.2: a line of the message that starts with a period gets one more.
_LEADING_DOT = re.compile(rb"(?m)^\.")

BeforeDot = Callable[[], Awaitable[None]]
_SmtpErrors = (aiosmtplib.SMTPException, OSError)


class SmtpFailure(Exception):
    """A send that did not end with the relay taking the message, and why.

    ``kind`` is the typed outcome; ``stage``, ``code``, ``enhanced`` and ``text`` are the
    evidence. The subclasses name what the caller does with it (they are what
    activities/send.py catches): ``RecipientRejected`` bounce, ``TemporarySmtpError`` defer
    and retry, ``PermanentSmtpError`` record failed, ``DeliveryUncertain`` record uncertain.
    """

    def __init__(
        self,
        kind: FailureKind,
        *,
        stage: Stage,
        code: int | None = None,
        text: str = "",
    ) -> None:
        self.kind: FailureKind = kind
        self.stage: Stage = stage
        self.code = code
        self.enhanced = parse_enhanced(code, text) if code is not None else None
        self.text = " ".join(text.split())
        reply = f"{code} {self.text}" if code is not None else self.text
        super().__init__(f"{kind} at {stage}: {reply}")

    @property
    def relay_side(self) -> bool:
        """The relay or our side of it is the problem: what a circuit breaker counts."""
        return self.kind in ("sender_or_relay", "unreachable")

    @property
    def reason(self) -> str:
        """A short record of it: ``bad_mailbox 550 5.1.1``, ``uncertain``."""
        parts = [self.kind, *(str(p) for p in (self.code, self.enhanced) if p is not None)]
        return " ".join(parts)


class RecipientRejected(SmtpFailure):
    """``bad_mailbox``: a hard bounce; the address is suppressed."""


class TemporarySmtpError(SmtpFailure):
    """``soft``, ``sender_or_relay`` or ``unreachable``: nothing was accepted; send again later.
    ``sender_or_relay`` and ``unreachable`` are the relay's side and count toward pausing."""


class PermanentSmtpError(SmtpFailure):
    """``bad_message``: this message will not be accepted as it is; retrying cannot help."""


class DeliveryUncertain(SmtpFailure):
    """``uncertain``: the final dot was written and no reply was read (dropped, timed out,
    garbled). The relay may have accepted the message (RFC 1047, RFC 5321 §6.1), so sending it
    again may deliver it twice."""


_CLASS_OF: dict[FailureKind, type[SmtpFailure]] = {
    "bad_mailbox": RecipientRejected,
    "soft": TemporarySmtpError,
    "sender_or_relay": TemporarySmtpError,
    "unreachable": TemporarySmtpError,
    "bad_message": PermanentSmtpError,
    "uncertain": DeliveryUncertain,
}


def failure(
    kind: FailureKind, *, stage: Stage, code: int | None = None, text: str = ""
) -> SmtpFailure:
    """The failure of ``kind``, as the subclass that says what to do with it."""
    return _CLASS_OF[kind](kind, stage=stage, code=code, text=text)


def refused(stage: Stage, code: int, text: str) -> SmtpFailure:
    """The failure a negative reply ``code text`` at ``stage`` stands for."""
    return failure(classify(stage, code, text), stage=stage, code=code, text=text)


@dataclass(frozen=True)
class SmtpReply:
    """The relay's reply to the final dot when it took the message (250)."""

    code: int
    enhanced: Enhanced | None
    text: str


class SmtpConnection:
    """One connection of the pool, held by one caller between entering and leaving
    ``SmtpPool.connection()``.

    ``dot_written`` says whether the last ``send`` wrote the final dot: a caller cancelled
    in the middle of ``send`` reads it to tell "nothing left" from "outcome unknown".
    """

    def __init__(self, client: aiosmtplib.SMTP, *, reply_timeout: float) -> None:
        self.client = client
        self.last_used = 0.0
        self.dot_written = False
        self._reply_timeout = reply_timeout
        self._open_transaction = False  # MAIL sent and the transaction neither over nor reset

    @property
    def reusable(self) -> bool:
        return self.client.is_connected and not self._open_transaction

    async def send(
        self, message: EmailMessage, *, before_dot: BeforeDot | None = None
    ) -> SmtpReply:
        """Send ``message`` to its one recipient; returns the relay's 250 reply.

        ``before_dot`` is awaited after the relay took the envelope and the message text,
        just before the final dot: if it raises (or is cancelled) the dot is not written,
        the connection is closed and the relay discards the message. Raises
        ``SmtpFailure``: ``DeliveryUncertain`` only when the dot was written and no reply
        could be read; every other kind means the relay did not take the message.
        """
        sender, recipient = _envelope(message)
        data = _LEADING_DOT.sub(b"..", to_wire(message))
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        self.dot_written = False
        self._open_transaction = True
        await self._command("mail", self.client.mail(sender, options=self._mail_options(data)))
        await self._command("rcpt", self.client.rcpt(recipient))
        start = await self._command("data", self.client.execute_command(b"DATA"))
        if start.code != 354:
            raise await self._refused("data", start.code, start.message)
        await self._write_then_dot(data, before_dot)
        return await self._final_reply()

    async def noop(self) -> None:
        """One NOOP: raises ``SmtpFailure`` if the relay no longer answers."""
        await self._command("connect", self.client.noop())

    def _mail_options(self, data: bytes) -> list[str]:
        options = []
        if self.client.supports_extension("size"):  # RFC 1870: refused before the data goes
            options.append(f"SIZE={len(data)}")
        if not data.isascii() and self.client.supports_extension("8bitmime"):  # RFC 6152
            options.append("BODY=8BITMIME")
        return options

    async def _command(
        self, stage: Stage, call: Awaitable[aiosmtplib.SMTPResponse]
    ) -> aiosmtplib.SMTPResponse:
        try:
            return await call
        except aiosmtplib.SMTPResponseException as exc:  # a reply, with its code
            raise await self._refused(stage, exc.code, exc.message) from exc
        except _SmtpErrors as exc:  # dropped, timed out: the relay took nothing
            self.client.close()
            raise failure("unreachable", stage=stage, text=_describe(exc)) from exc

    async def _refused(self, stage: Stage, code: int, text: str) -> SmtpFailure:
        """The failure for a negative reply; the transaction is reset so the connection
        stays usable (or closed if the reply was not SMTP)."""
        if 200 <= code < 600:
            try:
                await self.client.rset()
                self._open_transaction = False
            except _SmtpErrors:
                self.client.close()
        else:
            self.client.close()
        return refused(stage, code, text)

    async def _write_then_dot(self, data: bytes, before_dot: BeforeDot | None) -> None:
        protocol = self.client.protocol
        try:
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
            protocol.write(data)  # every line, but not the end-of-data line
        except _SmtpErrors as exc:
            self.client.close()
            raise failure("unreachable", stage="data", text=_describe(exc)) from exc
        if before_dot is not None:
            try:
                await before_dot()
            except BaseException:
                self.client.close()  # no dot: the relay drops the partial message
                raise
        protocol = self.client.protocol  # the relay may have hung up meanwhile
        try:
            if protocol is None or not protocol.is_connected:
                raise aiosmtplib.SMTPServerDisconnected("Connection lost before the final dot")
            protocol.write(b".\r\n")
        except _SmtpErrors as exc:
            self.client.close()
            raise failure("unreachable", stage="data", text=_describe(exc)) from exc
        # No await between the write and this line: a cancellation cannot fall in between.
        self.dot_written = True

    async def _final_reply(self) -> SmtpReply:
        protocol = self.client.protocol
        try:
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
            reply = await protocol.read_response(timeout=self._reply_timeout)
        except _SmtpErrors as exc:  # dropped, timed out, or not an SMTP reply
            self.client.close()
            raise failure("uncertain", stage="dot", text=_describe(exc)) from exc
        except BaseException:
            self.client.close()  # cancelled waiting for the reply: the connection is out of step
            raise
        # RFC 5321 §4.1.1.4: the reply to the dot ends the transaction, whatever it says.
        self._open_transaction = False
        if reply.code == 421:  # and the relay is closing the connection (§3.8)
            self.client.close()
        if reply.code != 250:
            raise refused("dot", reply.code, reply.message)
        return SmtpReply(reply.code, parse_enhanced(reply.code, reply.message), reply.message)


class SmtpPool:
    """At most ``size`` connections, each reused for many messages.

    ``timeout`` bounds each command (and connecting); ``reply_timeout`` the wait for the
    reply to the final dot, the one wait that ends in ``uncertain`` (RFC 5321 §4.5.3.2.6
    suggests 10 minutes; keep it below the activity's start-to-close).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str = "",
        password: str = "",
        starttls: bool = False,
        use_tls: bool = False,
        timeout: float = 30.0,
        reply_timeout: float | None = None,
        size: int = 4,
    ) -> None:
        self._host, self._port = host, port
        self._username, self._password = username, password
        self._starttls, self._use_tls = starttls, use_tls
        self._timeout = timeout
        self._reply_timeout = reply_timeout if reply_timeout is not None else timeout
        self._idle: asyncio.LifoQueue[SmtpConnection] = asyncio.LifoQueue()
        self._slots = asyncio.Semaphore(size)
        self.connections_opened = 0

    @property
    def relay(self) -> str:
        """``host:port`` of the relay (what the circuit breaker is kept for)."""
        return f"{self._host}:{self._port}"

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[SmtpConnection]:
        """A ready connection (connected, logged in, checked if idle for a while), held until
        the block ends; waits while all ``size`` are in use. Raises ``SmtpFailure``
        (``unreachable`` or ``sender_or_relay``) if none can be had. A connection left in the
        middle of a transaction (an error, a cancellation) is closed, not reused."""
        async with self._slots:
            conn = await self._ready()
            try:
                yield conn
            finally:
                if conn.reusable:
                    conn.last_used = time.monotonic()
                    self._idle.put_nowait(conn)
                else:
                    _close(conn)

    async def send(
        self, message: EmailMessage, *, before_dot: BeforeDot | None = None
    ) -> SmtpReply:
        """``connection()`` and ``SmtpConnection.send`` in one."""
        async with self.connection() as conn:
            return await conn.send(message, before_dot=before_dot)

    async def probe(self) -> None:
        """Raises ``SmtpFailure`` unless a connection can be had and answers NOOP."""
        async with self.connection() as conn:
            await conn.noop()

    async def _ready(self) -> SmtpConnection:
        while True:
            try:
                conn = self._idle.get_nowait()
            except asyncio.QueueEmpty:
                return await self._open()
            if not conn.client.is_connected:
                _close(conn)
                continue
            if time.monotonic() - conn.last_used < _IDLE_CHECK_SECONDS:
                return conn
            try:
                await conn.client.noop()
                return conn
            except BaseException as exc:
                _close(conn)
                if not isinstance(exc, _SmtpErrors):
                    raise

    async def _open(self) -> SmtpConnection:
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            timeout=self._timeout,
            use_tls=self._use_tls,
            start_tls=self._starttls,
        )
        try:
            await client.connect()
            if self._username:
                await client.login(self._username, self._password)
        except BaseException as exc:
            client.close()  # a refused login must not leave the connection open
            if isinstance(exc, _SmtpErrors):
                raise _opening_failure(exc) from exc
            raise
        self.connections_opened += 1
        return SmtpConnection(client, reply_timeout=self._reply_timeout)

    async def close(self) -> None:
        while True:
            try:
                conn = self._idle.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await conn.client.quit()
            except _SmtpErrors:
                conn.client.close()


def _envelope(message: EmailMessage) -> tuple[str, str]:
    """Sender and the one recipient: one recipient per transaction, so a reply is its own."""
    sender = extract_sender(message)
    recipients = extract_recipients(message)
    if sender is None or len(recipients) != 1:
        raise ValueError(f"a message needs a sender and one recipient, got {recipients!r}")
    sender, recipient = parse_address(sender), parse_address(recipients[0])
    if not (sender + recipient).isascii():
        # RFC 6531 SMTPUTF8 is not spoken here; retrying cannot help.
        raise failure("bad_message", stage="mail", text=f"non-ASCII address {recipient!r}")
    return sender, recipient


def _opening_failure(exc: BaseException) -> SmtpFailure:
    if isinstance(exc, aiosmtplib.SMTPResponseException):  # greeting, EHLO, AUTH (535...)
        return refused("connect", exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPTimeoutError | OSError):
        return failure("unreachable", stage="connect", text=_describe(exc))
    # No AUTH offered, STARTTLS refused...: the relay and our settings disagree.
    return failure("sender_or_relay", stage="connect", text=_describe(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _close(conn: SmtpConnection) -> None:
    try:
        conn.client.close()
    except Exception:  # closing a broken connection: nothing more to do
        log.debug("closing SMTP connection failed", exc_info=True)
