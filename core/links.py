"""Links inside emails: click tracking, the open pixel, unsubscribe. Tokens are signed
(core/tokens.py); a click token carries its target URL, so the redirect can only go
to links that were in that email. The "keep writing to me" link expires (``STAY_DAYS``): an
old email cannot lift a later sunset."""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from typing import Any

from core import tokens

_HREF = re.compile(r'href="(https?://[^"]+)"')
STAY_DAYS = 60  # a last call's "keep writing to me" link works this long after the send
_MUST_EXPIRE = frozenset({"stay"})  # a token for these without an expiry counts as expired
_LIST_LINKS = ("u", "s", "r")  # unsubscribe, stay, report: our pages, not the shop's


@dataclass(frozen=True)
class Links:
    base_url: str
    secret: str

    def _url(
        self, kind: str, payload: dict[str, Any], purpose: str, expires_at: float | None = None
    ) -> str:
        token = tokens.sign(payload, secret=self.secret, purpose=purpose, expires_at=expires_at)
        return f"{self.base_url.rstrip('/')}/{kind}/{token}"

    def unsubscribe(self, *, customer_id: str, journey: str) -> str:
        return self._url("u", {"c": customer_id, "j": journey}, "unsubscribe")

    def report(self, *, customer_id: str, send_key: str) -> str:
        """ "Report this email" in every marketing email's footer: a confirmation page, and
        its button records a complaint (starter/http/unsubscribe.py)."""
        return self._url("r", {"c": customer_id, "k": send_key}, "report")

    def stay(self, *, customer_id: str, send_key: str, now: float | None = None) -> str:
        """The "keep writing to me" link of a last call: a page with one button, no login;
        it expires ``STAY_DAYS`` after ``now`` (the send)."""
        expires_at = (time.time() if now is None else now) + STAY_DAYS * 86400
        return self._url("s", {"c": customer_id, "k": send_key}, "stay", expires_at)

    def open_pixel(self, *, customer_id: str, send_key: str) -> str:
        return self._url("t/o", {"c": customer_id, "k": send_key}, "open")

    def click(self, *, customer_id: str, send_key: str, url: str) -> str:
        return self._url("t/c", {"c": customer_id, "k": send_key, "u": url}, "click")

    def read(self, token: str, purpose: str) -> dict[str, Any] | None:
        """The payload of a genuine, unexpired token for ``purpose``; else None."""
        payload = tokens.verify(token, secret=self.secret, purpose=purpose)
        return None if payload is None or self._out_of_time(payload, purpose) else payload

    def expired(self, token: str, purpose: str) -> bool:
        """True for a genuine token for ``purpose`` whose time is up (a page says so)."""
        payload = tokens.verify(token, secret=self.secret, purpose=purpose)
        return payload is not None and self._out_of_time(payload, purpose)

    @staticmethod
    def _out_of_time(payload: dict[str, Any], purpose: str) -> bool:
        if purpose in _MUST_EXPIRE and tokens.EXPIRES not in payload:
            return True  # signed before links expired: as old as can be
        return tokens.expired(payload)

    def own(self, url: str) -> bool:
        """One of our list links (unsubscribe, keep writing, report this email): never
        tracked, so following one is never counted as engagement."""
        base = self.base_url.rstrip("/")
        return any(url.startswith(f"{base}/{kind}/") for kind in _LIST_LINKS)

    def track_html(self, body: str, *, customer_id: str, send_key: str, keep: set[str]) -> str:
        """Every http(s) link through the click tracker (but ``keep`` and our own list
        links), plus the open pixel."""

        def rewrite(match: re.Match[str]) -> str:
            url = html.unescape(match.group(1))
            if url in keep or self.own(url):
                return match.group(0)
            tracked = self.click(customer_id=customer_id, send_key=send_key, url=url)
            return f'href="{html.escape(tracked)}"'

        body = _HREF.sub(rewrite, body)
        pixel = self.open_pixel(customer_id=customer_id, send_key=send_key)
        # 1x1 and visible to the client: a display:none image is not fetched by some clients.
        img = (
            f'<img src="{html.escape(pixel)}" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0">'
        )
        if "</body>" in body:
            return body.replace("</body>", f"{img}\n</body>", 1)
        return body + img
