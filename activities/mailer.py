"""SMTP sending through a small pool of reused aiosmtplib connections."""

from __future__ import annotations

import asyncio
import logging
import time
from email.message import EmailMessage

import aiosmtplib

log = logging.getLogger(__name__)

# An idle connection older than this is checked with NOOP before a message goes over it, so a
# connection the server dropped is replaced before sending, never in the middle of a send.
_IDLE_CHECK_SECONDS = 5.0


class TemporarySmtpError(Exception):
    """Try again later: 4xx, connection refused or dropped, timeout."""


class RecipientRejected(Exception):
    """5xx for the recipient: a hard bounce."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code


class PermanentSmtpError(Exception):
    """5xx not about the recipient (content, sender): retrying will not help."""


class _Conn:
    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self.last_used = 0.0


class SmtpPool:
    """At most ``size`` connections, each reused for many messages."""

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
        size: int = 4,
    ) -> None:
        self._host, self._port = host, port
        self._username, self._password = username, password
        self._starttls, self._use_tls = starttls, use_tls
        self._timeout = timeout
        self._size = size
        self._idle: asyncio.LifoQueue[_Conn] = asyncio.LifoQueue()
        self._slots = asyncio.Semaphore(size)
        self.connections_opened = 0

    async def send(self, message: EmailMessage) -> None:
        """Send one message; raises one of the three error classes above on failure."""
        async with self._slots:
            conn: _Conn | None = None
            try:
                conn = await self._ready(self._take_idle())
                errors, _ = await conn.client.send_message(message)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                self._release(conn)  # the connection is fine after a refusal
                raise _classify_refused(exc) from exc
            except aiosmtplib.SMTPResponseException as exc:
                if isinstance(exc, aiosmtplib.SMTPServerDisconnected) or exc.code >= 600:
                    self._discard(conn)
                    raise TemporarySmtpError(str(exc)) from exc
                self._release(conn)
                if 400 <= exc.code < 500:
                    raise TemporarySmtpError(f"{exc.code} {exc.message}") from exc
                raise PermanentSmtpError(f"{exc.code} {exc.message}") from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                self._discard(conn)
                raise TemporarySmtpError(str(exc) or type(exc).__name__) from exc
            except BaseException:
                self._discard(conn)  # cancelled mid-transaction: the connection state is unknown
                raise
            self._release(conn)
            if errors:  # some recipients refused; we send to one, so rarely reached
                code, text = next(iter(errors.values()))
                if code >= 500:
                    raise RecipientRejected(code, text)
                raise TemporarySmtpError(f"{code} {text}")

    def _take_idle(self) -> _Conn | None:
        try:
            return self._idle.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def _ready(self, conn: _Conn | None) -> _Conn:
        if conn is not None and conn.client.is_connected:
            if time.monotonic() - conn.last_used < _IDLE_CHECK_SECONDS:
                return conn
            try:
                await conn.client.noop()
                return conn
            except (aiosmtplib.SMTPException, OSError):
                self._discard(conn)
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            timeout=self._timeout,
            use_tls=self._use_tls,
            start_tls=self._starttls,
        )
        await client.connect()
        if self._username:
            await client.login(self._username, self._password)
        self.connections_opened += 1
        return _Conn(client)

    def _release(self, conn: _Conn | None) -> None:
        if conn is not None:
            conn.last_used = time.monotonic()
            self._idle.put_nowait(conn)

    def _discard(self, conn: _Conn | None) -> None:
        if conn is None:
            return
        try:
            conn.client.close()
        except Exception:  # closing a broken connection: nothing more to do
            log.debug("closing SMTP connection failed", exc_info=True)

    async def close(self) -> None:
        while True:
            conn = self._take_idle()
            if conn is None:
                return
            try:
                await conn.client.quit()
            except (aiosmtplib.SMTPException, OSError):
                conn.client.close()


def _classify_refused(exc: aiosmtplib.SMTPRecipientsRefused) -> Exception:
    first = exc.recipients[0]
    if first.code >= 500:
        return RecipientRejected(first.code, first.message)
    return TemporarySmtpError(f"{first.code} {first.message}")
