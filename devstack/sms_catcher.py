"""A local SMS provider that speaks Twilio's Messages API and keeps every message.

    python -m devstack.sms_catcher --port 8025 --dir var/sms --callbacks

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (HTTP Basic: the account SID and
auth token; form-encoded ``To``, ``From``, ``Body``, ``StatusCallback``) answers ``201`` with
the message resource, as Twilio does, and keeps the message (in memory and, with a
directory, one JSON line each in ``messages.jsonl``: ``python -m starter sms`` lists them).
``GET`` of the same path lists them. A ``To`` that is no E.164 number gets Twilio's ``400``
error 21211. With ``callbacks`` each message's StatusCallback is sent ``delivered``, signed
with the auth token as Twilio signs it (X-Twilio-Signature), so ``make run`` shows the
whole path.

Tests make it answer a number otherwise (``answers[number]``): an error code (``("error",
400, "21610")``), ``"unavailable"`` (503: took nothing), or ``"drop"`` (reads the request,
keeps the message and closes the connection without an answer: the uncertain case).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import re
import signal
import threading
import urllib.request
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from core.sms import segments, twilio_signature

log = logging.getLogger("sms_catcher")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_MESSAGES = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
Answer = str | tuple[str, int, str]


class SmsCatcher:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        directory: Path | None = None,
        account_sid: str = "AC" + "0" * 32,
        auth_token: str = "local",
        callbacks: bool = False,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.callbacks = callbacks
        self.directory = directory
        self.messages: list[dict[str, Any]] = []
        self.requests = 0  # every POST, answered or not
        self.answers: dict[str, Answer] = {}
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread: threading.Thread | None = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SmsCatcher:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def to(self, number: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if m["to"] == number]

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.answers.clear()

    def keep(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.messages.append(message)
            if self.directory is not None:
                with (self.directory / "messages.jsonl").open("a", encoding="utf-8") as f:
                    f.write(json.dumps(message, ensure_ascii=False) + "\n")
        log.info("caught text %s to %s: %r", message["sid"], message["to"], message["body"])

    def deliver(self, message: dict[str, Any]) -> None:
        """Send the message's StatusCallback ``delivered``, signed (make run)."""
        url = message.get("status_callback")
        if not url:
            return
        form = {
            "MessageSid": message["sid"],
            "AccountSid": self.account_sid,
            "From": message["from"],
            "To": message["to"],
            "MessageStatus": "delivered",
        }
        data = urlencode(form).encode()
        request = urllib.request.Request(url, data=data, method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        request.add_header("X-Twilio-Signature", twilio_signature(url, form, self.auth_token))
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except OSError as exc:
            log.warning("status callback to %s failed: %s", url, exc)


# Longer than the ~60-line guide: the Twilio-like HTTP handler class: its methods share the catcher
# it closes over
def _handler(catcher: SmsCatcher) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, code: int, message: str) -> None:
            self._answer(status, {"code": code, "message": message, "status": status})

        def _authorized(self) -> bool:
            expected = f"{catcher.account_sid}:{catcher.auth_token}".encode()
            given = self.headers.get("Authorization", "")
            return given == "Basic " + base64.b64encode(expected).decode()

        def do_GET(self) -> None:
            match = _MESSAGES.match(self.path.split("?")[0])
            if match is None:
                return self._error(404, 20404, "The requested resource was not found")
            if not self._authorized():
                return self._error(401, 20003, "Authenticate")
            with catcher.lock:
                messages = list(catcher.messages)
            self._answer(200, {"messages": messages})

        def do_POST(self) -> None:
            match = _MESSAGES.match(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(parse_qsl(self.rfile.read(length).decode("utf-8")))
            with catcher.lock:
                catcher.requests += 1
            if match is None:
                return self._error(404, 20404, "The requested resource was not found")
            if not self._authorized() or match.group(1) != catcher.account_sid:
                return self._error(401, 20003, "Authenticate")
            to, body = form.get("To", ""), form.get("Body", "")
            if not body:
                return self._error(400, 21602, "Message body is required.")
            if not _E164.match(to):
                return self._error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
            with catcher.lock:
                answer = catcher.answers.get(to)
            if isinstance(answer, tuple):
                _, status, code = answer
                return self._error(status, int(code), f"error {code} (set by the test)")
            if answer == "unavailable":
                return self._error(503, 20500, "Service unavailable")
            counted = segments(body)
            message = {
                "sid": "SM" + uuid.uuid4().hex,
                "account_sid": catcher.account_sid,
                "to": to,
                "from": form.get("From", ""),
                "body": body,
                "status": "queued",
                "num_segments": str(counted.count),
                "encoding": counted.encoding,
                "status_callback": form.get("StatusCallback"),
                "date_created": datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000"),
                "api_version": "2010-04-01",
            }
            catcher.keep(message)
            if answer == "drop":  # kept, never answered: the client cannot know
                self.close_connection = True
                self.connection.close()
                return None
            self._answer(201, message)
            if catcher.callbacks:
                threading.Thread(target=catcher.deliver, args=(message,), daemon=True).start()
            return None

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Local SMS catcher speaking Twilio's API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", type=Path, default=Path("var/sms"))
    parser.add_argument("--account-sid", default="AC" + "0" * 32)
    parser.add_argument("--auth-token", default="local")
    parser.add_argument("--callbacks", action="store_true", help="send 'delivered' callbacks")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    catcher = SmsCatcher(
        host=args.host,
        port=args.port,
        directory=args.dir,
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        callbacks=args.callbacks,
    ).start()
    log.info("SMS catcher on %s keeping texts in %s", catcher.base_url, args.dir)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    catcher.stop()


if __name__ == "__main__":
    main()
