"""Time-zone helpers for demos and tests."""

from __future__ import annotations

from datetime import UTC, datetime


def zone_at_local_hour(hour: int, now: datetime | None = None) -> str:
    """A fixed-offset IANA zone (Etc/GMT±N) where it is about ``hour`` o'clock now: demos and
    tests use it so that quiet hours (21:00-08:00 local) hold a send only when they mean to."""
    offset = (hour - (now or datetime.now(UTC)).hour) % 24
    if offset > 12:
        offset -= 24
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")  # Etc/GMT signs are inverted
