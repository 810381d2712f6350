"""Pure rules of the send gate and the journeys: no I/O, no clock but the one passed in.

Each is a function of its arguments, so a table test covers it (tests/test_rules.py), and
workflows and activities share the same answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from journeys.config import QuietHours

# Suppressions that stop even transactional mail: the address does not take mail, or its
# owner reported us.
UNDELIVERABLE = frozenset({"hard_bounce", "complaint"})
# Suppressions an explicit re-subscribe lifts (never hard bounces or complaints).
LIFTED_BY_CONSENT = ("unsubscribed", "sunset")
# Suppressions a new order lifts: the customer is clearly engaged again.
LIFTED_BY_ORDER = ("sunset",)


def in_holdout(customer_id: str, journey: str, share: float) -> bool:
    """Deterministic: the same customer and journey always land in the same group; about
    ``share`` (0..1) of all customers are held out."""
    if share <= 0:
        return False
    digest = hashlib.sha256(f"{customer_id}:{journey}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def zone(name: str | None) -> ZoneInfo:
    """The customer's zone; UTC for a missing or unknown name."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_until(now: datetime, zone_name: str | None, quiet: QuietHours) -> datetime | None:
    """When the quiet hours around ``now`` (aware) end in ``zone_name``, in UTC; None outside
    them. Local wall-clock times: across a DST change the end is the local ``quiet.end``."""
    if not quiet.enabled or quiet.start == quiet.end:
        return None
    tz = zone(zone_name)
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    overnight = quiet.start > quiet.end
    inside = (t >= quiet.start or t < quiet.end) if overnight else quiet.start <= t < quiet.end
    if not inside:
        return None
    day = local.date() if t < quiet.end else local.date() + timedelta(days=1)
    end = datetime(day.year, day.month, day.day, quiet.end.hour, quiet.end.minute, tzinfo=tz)
    return end.astimezone(UTC)


def counts_as_order(
    order_id: str,
    skus_bought: Iterable[str],
    *,
    ignore_order_id: str | None,
    skus: list[str] | None,
) -> bool:
    """The one rule for "has the customer ordered (what this journey waits for)": any order
    but ``ignore_order_id`` (the one that started the journey), and with ``skus`` only an
    order of one of them."""
    if ignore_order_id is not None and order_id == ignore_order_id:
        return False
    if skus:
        return bool(set(skus_bought) & set(skus))
    return True


def skus_of(lines: Mapping[str, Any]) -> list[str]:
    """The SKUs of an order's or a cart's stored lines (``{"items": [...]}``)."""
    return [str(line.get("sku")) for line in lines.get("items", [])]


def birthday_md(text: str) -> str | None:
    """ "1990-05-17", "05-17" or "--05-17" -> "05-17"; None when it is no date. 29 February
    is a birthday (checked against a leap year)."""
    parts = text.strip().lstrip("-").split("-")
    try:
        month, day = int(parts[-2]), int(parts[-1])
        date(2000, month, day)
    except (ValueError, IndexError):
        return None
    return f"{month:02d}-{day:02d}"


def main_category(categories: Iterable[str | None]) -> str | None:
    """The most frequent category of an order's lines (ties: the first seen)."""
    seen = [c for c in categories if c]
    return max(dict.fromkeys(seen), key=seen.count) if seen else None
