"""Links inside emails: click tracking, the open pixel, unsubscribe. Tokens are signed
(core/tokens.py); a click token carries its target URL, so the redirect can only go
to links that were in that email."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

from core import tokens

_HREF = re.compile(r'href="(https?://[^"]+)"')


@dataclass(frozen=True)
class Links:
    base_url: str
    secret: str

    def _url(self, kind: str, payload: dict[str, Any], purpose: str) -> str:
        token = tokens.sign(payload, secret=self.secret, purpose=purpose)
        return f"{self.base_url.rstrip('/')}/{kind}/{token}"

    def unsubscribe(self, *, customer_id: str, journey: str) -> str:
        return self._url("u", {"c": customer_id, "j": journey}, "unsubscribe")

    def stay(self, *, customer_id: str, send_key: str) -> str:
        """The "keep writing to me" link of a last call: one click, no login."""
        return self._url("s", {"c": customer_id, "k": send_key}, "stay")

    def open_pixel(self, *, customer_id: str, send_key: str) -> str:
        return self._url("t/o", {"c": customer_id, "k": send_key}, "open")

    def click(self, *, customer_id: str, send_key: str, url: str) -> str:
        return self._url("t/c", {"c": customer_id, "k": send_key, "u": url}, "click")

    def read(self, token: str, purpose: str) -> dict[str, Any] | None:
        return tokens.verify(token, secret=self.secret, purpose=purpose)

    def track_html(self, body: str, *, customer_id: str, send_key: str, keep: set[str]) -> str:
        """Every http(s) link through the click tracker (but ``keep``), plus the open pixel."""

        def rewrite(match: re.Match[str]) -> str:
            url = html.unescape(match.group(1))
            if url in keep:
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
