"""Pacing sends per mailbox provider, and who goes first when many are due: pure rules.

Mailbox providers judge a sender by its rate and by the first reactions to a burst (Google's
and Yahoo's bulk-sender guidelines ask senders to ramp and pace; Microsoft throttles with
``421 4.7.x`` when a sender goes too fast). So sends are paced per *provider*, not per
domain (gmail.com and googlemail.com are one provider), and when many sends wait for the same
provider the customers who read the shop's email lately go first.

- :func:`provider_of` maps a recipient address to its provider group (``PROVIDERS``; any
  other domain is ``"other"``).
- :func:`parse_rates` reads ``SMTP_PROVIDER_RATES`` (``"google=20,microsoft=10,other=50"``:
  messages per second per worker, for each group; groups left out keep ``DEFAULT_RATES``).
- :func:`engagement_rank` orders waiting sends: 0 (a person opened or clicked within
  ``ACTIVE_DAYS``), 1 (within ``WARM_DAYS``), 2 (longer ago), 3 (never); transactional sends
  rank -1 (a receipt never waits behind marketing).
"""

from __future__ import annotations

from datetime import datetime, timedelta

# Well-known consumer domains by the provider that hosts their mailboxes.
PROVIDERS: dict[str, tuple[str, ...]] = {
    "google": ("gmail.com", "googlemail.com"),
    "microsoft": ("outlook.com", "hotmail.com", "live.com", "msn.com", "hotmail.co.uk"),
    "yahoo": ("yahoo.com", "ymail.com", "rocketmail.com", "aol.com", "yahoo.co.uk"),
    "apple": ("icloud.com", "me.com", "mac.com"),
    "gmx": ("gmx.de", "gmx.net", "gmx.com", "web.de"),
    "qq": ("qq.com", "foxmail.com"),
    "netease": ("163.com", "126.com", "yeah.net"),
}
_BY_DOMAIN = {domain: group for group, domains in PROVIDERS.items() for domain in domains}

# Messages per second per worker. Conservative: no provider publishes a number; these stay
# well under what a warmed-up sender is throttled at, and a shop raises them per provider.
DEFAULT_RATES: dict[str, float] = {
    "google": 20.0,
    "microsoft": 10.0,
    "yahoo": 10.0,
    "apple": 10.0,
    "gmx": 5.0,
    "qq": 5.0,
    "netease": 5.0,
    "other": 50.0,
}

ACTIVE_DAYS = 30
WARM_DAYS = 90


def provider_of(address: str) -> str:
    """``"ada@GoogleMail.com"`` → ``"google"``; an unknown domain → ``"other"``."""
    domain = address.rpartition("@")[2].strip().lower().rstrip(".")
    return _BY_DOMAIN.get(domain, "other")


def parse_rates(text: str) -> dict[str, float]:
    """``"google=20, microsoft=2.5"`` → the default rates with those replaced.

    Raises ``ValueError`` naming the part that is wrong: an unknown group, a missing ``=``,
    a rate that is not a positive number.
    """
    rates = dict(DEFAULT_RATES)
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        group, sep, value = part.partition("=")
        group = group.strip().lower()
        if not sep:
            raise ValueError(f"{part!r}: expected provider=messages per second")
        if group not in rates:
            raise ValueError(f"{part!r}: unknown provider {group!r}; known: {', '.join(rates)}")
        try:
            rate = float(value)
        except ValueError:
            raise ValueError(f"{part!r}: {value.strip()!r} is not a number") from None
        if not rate > 0:
            raise ValueError(f"{part!r}: the rate must be above 0 messages per second")
        rates[group] = rate
    return rates


def engagement_rank(
    last_engaged_at: datetime | None, now: datetime, *, transactional: bool = False
) -> int:
    """Lower goes first: -1 transactional, 0 engaged within ACTIVE_DAYS, 1 within WARM_DAYS,
    2 engaged longer ago, 3 never (human opens and clicks only)."""
    if transactional:
        return -1
    if last_engaged_at is None:
        return 3
    age = now - last_engaged_at
    if age <= timedelta(days=ACTIVE_DAYS):
        return 0
    if age <= timedelta(days=WARM_DAYS):
        return 1
    return 2
