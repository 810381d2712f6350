"""Time zones chosen by the hour it is in them now: for the demo, tests, history recording and
the bench, so that quiet hours hold a send only when they mean to, whenever they run."""

from __future__ import annotations

from datetime import UTC, datetime


def zone_at_local_hour(hour: int, now: datetime | None = None) -> str:
    """A fixed-offset IANA zone (Etc/GMT±N, no DST) where it is ``hour`` o'clock now (the
    minutes as in UTC); quiet hours are 21:00-08:00 local by default."""
    offset = (hour - (now or datetime.now(UTC)).hour) % 24
    if offset > 12:
        offset -= 24
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")  # Etc/GMT signs are inverted
