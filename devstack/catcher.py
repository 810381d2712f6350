"""A local SMTP server (aiosmtpd) that keeps every message it receives.

Messages go to a Maildir (``CATCHER_MAILDIR``, default var/mail) and to an in-memory list;
``python -m starter mail`` lists them. Tests use the same class, and can make it refuse a
recipient (5xx) or answer 4xx, to exercise bounces and retries.
"""

from __future__ import annotations

import argparse
import logging
import mailbox
import signal
import socket
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

log = logging.getLogger("catcher")


class _Handler:
    def __init__(self, catcher: MailCatcher) -> None:
        self._catcher = catcher

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self._catcher.lock:
            self._catcher.connections += 1
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        answer = self._catcher.answer_for(address)
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content
        self._catcher.keep(raw)
        return "250 Message accepted for delivery"


class MailCatcher:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, maildir: Path | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.maildir = maildir
        self.messages: list[EmailMessage] = []
        self.raw: list[bytes] = []  # each message as received, byte for byte (after dot-unstuffing)
        self._to: list[str] = []  # each message's To header, lowercase (parsed once, in keep)
        self.connections = 0
        self.lock = threading.Lock()
        self.received = threading.Condition(self.lock)
        # recipient (lowercase) -> SMTP answer to RCPT, e.g. "550 5.1.1 No such user"
        self.rcpt_answers: dict[str, str] = {}
        self._controller: Controller | None = None
        if maildir is not None:
            for sub in ("tmp", "new", "cur"):  # Maildir(create=True) skips an existing dir
                (maildir / sub).mkdir(parents=True, exist_ok=True)
            self._box: mailbox.Maildir | None = mailbox.Maildir(str(maildir), create=True)
        else:
            self._box = None

    def answer_for(self, address: str) -> str | None:
        with self.lock:
            return self.rcpt_answers.get(address.lower())

    def keep(self, raw: bytes) -> None:
        msg = message_from_bytes(raw, policy=policy.default)
        with self.received:
            self.messages.append(msg)
            self.raw.append(raw)
            self._to.append(str(msg["To"]).lower())
            if self._box is not None:
                self._box.add(raw)
            self.received.notify_all()
        log.info("caught %r for %s", msg["Subject"], msg["To"])

    def start(self) -> MailCatcher:
        self._controller = Controller(
            _Handler(self), hostname=self.host, port=self.port, ready_timeout=10
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def to(self, address: str) -> list[EmailMessage]:
        """The messages whose To header holds ``address`` (any case), in arrival order."""
        address = address.lower()
        with self.lock:
            return [m for m, to in zip(self.messages, self._to, strict=True) if address in to]

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.raw.clear()
            self._to.clear()
            self.connections = 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description="Local SMTP catcher that keeps every message.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--maildir", type=Path, default=Path("var/mail"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    catcher = MailCatcher(host=args.host, port=args.port, maildir=args.maildir).start()
    log.info("SMTP catcher on %s:%s keeping mail in %s", args.host, args.port, args.maildir)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    catcher.stop()


if __name__ == "__main__":
    main()
