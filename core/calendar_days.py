"""Which holiday a date is, for the holiday journey (journeys/holidays.toml): a public
holiday of the shop's country from the ``holidays`` package (only those the shop names, when
it names any), one of the shop's own dates, or a day of the Chinese lunisolar calendar (the
Double Ninth) from the ``lunardate`` package. Pure: a date in, a name or None out."""

from __future__ import annotations

from datetime import date
from functools import cache

import holidays
from lunardate import LunarDate

from journeys.config import HolidayConfig


@cache
def _public(country: str, year: int) -> dict[date, str]:
    return dict(holidays.country_holidays(country, years=year).items())


@cache
def _lunar(day: date) -> tuple[int, int] | None:
    """``day``'s (month, day) in the Chinese lunisolar calendar; None in a leap month or
    outside the package's years (1900-2099)."""
    try:
        lunar = LunarDate.from_solar_date(day.year, day.month, day.day)
    except ValueError:
        return None
    return None if lunar.is_leap_month else (lunar.month, lunar.day)


def holiday_on(day: date, config: HolidayConfig) -> str | None:
    """The holiday ``day`` is (a shop date first, then a lunar one), or None.
    ``public_holidays`` matches the package's English names ("New Year's Day", ...)."""
    for own in config.shop_dates:
        if (own.month, own.day) == (day.month, day.day):
            return own.name
    if config.lunar_dates and (lunar := _lunar(day)) is not None:
        for own_lunar in config.lunar_dates:
            if (own_lunar.month, own_lunar.day) == lunar:
                return own_lunar.name
    if config.country is None:
        return None
    found = _public(config.country, day.year).get(day)
    if found is None:
        return None
    names = [n.strip() for n in found.split(";")]
    if config.public_holidays:
        names = [n for n in names if n in config.public_holidays]
    return names[0] if names else None
