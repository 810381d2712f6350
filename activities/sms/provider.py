"""The SMS provider: an interface, and Twilio's Messages REST API behind it.

``POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json``, HTTP Basic auth with the
account SID and auth token, a form-encoded body (``To``, ``From``, ``Body``,
``StatusCallback``); the answer is the message resource (``sid``, ``status``) or an error
(``code``, ``message``, ``status``). The local SMS catcher (devstack/sms_catcher.py) speaks
the same API, so development and the tests run this code.

What a failure means for the send is its ``kind``:
- ``unsent``: nothing reached the provider, or it answered that it took nothing (connection
  refused, 429, 5xx, a refused login): safe to try again;
- ``rejected``: the provider refused this message for good (4xx with an error code, e.g.
  21211 invalid number, 21610 unsubscribed at the carrier);
- ``uncertain``: the request went out and no answer came (a read timeout, a dropped
  connection): the provider may have the message, like an email's dot without a reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import httpx

API_VERSION = "2010-04-01"
FailureKind = Literal["unsent", "rejected", "uncertain"]


class SmsFailure(Exception):
    def __init__(self, kind: FailureKind, detail: str, code: str | None = None) -> None:
        super().__init__(detail)
        self.kind: FailureKind = kind
        self.detail = detail
        self.code = code  # the provider's error code (Twilio: "21211", ...)


@dataclass(frozen=True)
class Accepted:
    """The provider took the message: its id (Twilio's SID) and status (queued, ...)."""

    sid: str
    status: str
    segments: int | None = None


class SmsProvider(Protocol):
    async def send(self, *, to: str, body: str, status_callback: str | None) -> Accepted:
        """Hand one text to the provider; raises :class:`SmsFailure`."""
        ...


@dataclass(frozen=True)
class TwilioSms:
    """Twilio's Messages API (or anything speaking it: the local catcher)."""

    base_url: str  # https://api.twilio.com, or the catcher's http://127.0.0.1:8025
    account_sid: str
    auth_token: str
    sender: str  # From: a number in E.164 or an alphanumeric sender id
    timeout: float = 15.0

    @property
    def messages_url(self) -> str:
        base = self.base_url.rstrip("/")
        return f"{base}/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    async def send(self, *, to: str, body: str, status_callback: str | None) -> Accepted:
        form = {"To": to, "From": self.sender, "Body": body}
        if status_callback:
            form["StatusCallback"] = status_callback
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                answer = await client.post(
                    self.messages_url, data=form, auth=(self.account_sid, self.auth_token)
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise SmsFailure("unsent", f"no connection to {self.base_url}: {exc!r}") from exc
        except httpx.TransportError as exc:  # written (maybe whole), never answered
            raise SmsFailure("uncertain", f"no answer from {self.base_url}: {exc!r}") from exc
        return _accepted_or_raise(answer)


def _accepted_or_raise(answer: httpx.Response) -> Accepted:
    try:
        data = answer.json()
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if answer.status_code in (200, 201) and data.get("sid"):
        segments = data.get("num_segments")
        return Accepted(
            sid=str(data["sid"]),
            status=str(data.get("status") or "queued"),
            segments=int(str(segments)) if str(segments or "").isdigit() else None,
        )
    code = str(data["code"]) if data.get("code") is not None else None
    detail = f"{answer.status_code} {code or ''} {data.get('message') or answer.text[:200]}"
    detail = " ".join(detail.split())
    if answer.status_code in (401, 403, 429) or answer.status_code >= 500:
        raise SmsFailure("unsent", detail, code)  # took nothing; try again later
    raise SmsFailure("rejected", detail, code)
