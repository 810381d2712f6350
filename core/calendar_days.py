"""Which holiday a date is, for the holiday journey (journeys/holidays.toml): a public
holiday of the shop's country from the ``holidays`` package (only those the shop names, when
it names any) or one of the shop's own dates. Pure: a date in, a name or None out."""

from __future__ import annotations

from datetime import date
from functools import cache

import holidays

from journeys.config import HolidayConfig


@cache
def _public(country: str, year: int) -> dict[date, str]:
    return dict(holidays.country_holidays(country, years=year).items())


def holiday_on(day: date, config: HolidayConfig) -> str | None:
    """The holiday ``day`` is (a shop date first), or None. ``public_holidays`` matches the
    package's English names ("New Year's Day", "Christmas Day", ...)."""
    for own in config.shop_dates:
        if (own.month, own.day) == (day.month, day.day):
            return own.name
    if config.country is None:
        return None
    found = _public(config.country, day.year).get(day)
    if found is None:
        return None
    names = [n.strip() for n in found.split(";")]
    if config.public_holidays:
        names = [n for n in names if n in config.public_holidays]
    return names[0] if names else None
