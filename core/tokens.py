"""Signed, opaque tokens for unsubscribe and tracking links (HMAC-SHA256 with SECRET_KEY).

A token carries ids only, never the email address. A token may carry an expiry (``x``, Unix
seconds, inside the signed payload): ``verify`` still returns such a payload after it, so a
caller can tell "expired" (a clear page) from "forged" (404); ``expired`` says which.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

EXPIRES = "x"  # the payload key of a token's expiry


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(
    payload: dict[str, Any], *, secret: str, purpose: str, expires_at: float | None = None
) -> str:
    if expires_at is not None:
        payload = {**payload, EXPIRES: int(expires_at)}
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret.encode(), f"{purpose}.{body}".encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac[:16])}"


def verify(token: str, *, secret: str, purpose: str) -> dict[str, Any] | None:
    """The payload, or None for a forged, altered or malformed token (expired or not:
    see ``expired``)."""
    try:
        body, mac = token.split(".", 1)
        expected = hmac.new(secret.encode(), f"{purpose}.{body}".encode(), hashlib.sha256)
        if not hmac.compare_digest(_unb64(mac), expected.digest()[:16]):
            return None
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def expired(payload: dict[str, Any], *, now: float | None = None) -> bool:
    """True when the payload carries an expiry that has passed (a bad one counts as passed)."""
    if EXPIRES not in payload:
        return False
    at = payload[EXPIRES]
    if not isinstance(at, int) or isinstance(at, bool):
        return True
    return (time.time() if now is None else now) >= at
