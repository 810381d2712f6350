"""The daily sweep's selections: set-based SQL over indexed columns, one keyset page at a
time (``id > after ORDER BY id LIMIT n``), so a million customers are never in memory."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from journeys.config import SweepSelection
from store.models import Customer, Order, Suppression

GROUPS = ("win_back", "repeat_purchase")


def _reachable() -> list[ColumnElement[bool]]:
    """Marketing email may go to them: subscribed, and no suppression (bounce, sunset...)."""
    return [
        Customer.subscribed.is_(True),
        ~exists().where(Suppression.email == func.lower(Customer.email)),
    ]


def lapsed_query(
    *, group: str, as_of: datetime, rules: SweepSelection, after_id: str, limit: int
) -> Select[str, datetime | None]:
    if group == "win_back":
        lapsed = and_(
            Customer.order_count > 1,
            Customer.last_order_at <= as_of - rules.repeat_lapsed_after,
        )
    elif group == "repeat_purchase":
        lapsed = and_(
            Customer.order_count == 1,
            Customer.last_order_at <= as_of - rules.single_lapsed_after,
        )
    else:
        raise ValueError(f"unknown sweep group {group!r}; expected one of {GROUPS}")
    conditions = [
        lapsed,
        *_reachable(),
        or_(
            Customer.last_emailed_at.is_(None),
            Customer.last_emailed_at < as_of - rules.no_email_within,
        ),
        # not already in a win-back for this lapse
        or_(Customer.winback_for.is_(None), Customer.winback_for != Customer.last_order_at),
        Customer.id > after_id,
    ]
    if rules.min_average_order_value is not None:
        average = (
            select(func.avg(Order.total)).where(Order.customer_id == Customer.id).scalar_subquery()
        )
        conditions.append(average >= rules.min_average_order_value)
    return (
        select(Customer.id, Customer.last_order_at)
        .where(*conditions)
        .order_by(Customer.id)
        .limit(limit)
    )


async def lapsed_page(
    session: AsyncSession,
    *,
    group: str,
    as_of: datetime,
    rules: SweepSelection,
    after_id: str,
    limit: int,
) -> list[tuple[str, datetime]]:
    rows = await session.execute(
        lapsed_query(group=group, as_of=as_of, rules=rules, after_id=after_id, limit=limit)
    )
    return [(row[0], row[1]) for row in rows if row[1] is not None]


async def bought_any(session: AsyncSession, *, customer_ids: list[str], skus: set[str]) -> set[str]:
    """Of these customers, who ever ordered one of ``skus`` (the never_bought filter)."""
    if not skus or not customer_ids:
        return set()
    rows = await session.execute(
        select(Order.customer_id, Order.lines).where(Order.customer_id.in_(customer_ids))
    )
    return {
        cid
        for cid, lines in rows
        if skus & {str(line.get("sku")) for line in (lines or {}).get("items", [])}
    }


async def mark_win_back(session: AsyncSession, *, customer_ids: list[str]) -> None:
    """Remember the lapse a win-back began for: the next sweeps skip them until they order."""
    if customer_ids:
        await session.execute(
            update(Customer)
            .where(Customer.id.in_(customer_ids))
            .values(winback_for=Customer.last_order_at)
        )


def birthday_dates(as_of: datetime) -> dict[str, list[str]]:
    """The local dates (any time zone) at ``as_of``, as "MM-DD" -> birthdays celebrated on
    it. On 28 February of a year without a 29th, 29 February birthdays are celebrated."""
    days = {(as_of + timedelta(hours=h)).date() for h in (-12, 0, 14)}
    out: dict[str, list[str]] = {}
    for d in sorted(days):
        md = f"{d.month:02d}-{d.day:02d}"
        out[md] = [md]
        if md == "02-28" and not _leap(d.year):
            out[md].append("02-29")
    return out


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


async def birthday_page(
    session: AsyncSession, *, as_of: datetime, after_id: str, limit: int
) -> tuple[list[tuple[str, int]], str | None]:
    """Customers whose birthday it is in their own time zone at ``as_of``, as (id, local
    year); and the last id looked at (the cursor), or None after the last page."""
    celebrated = birthday_dates(as_of)
    candidates = sorted({md for mds in celebrated.values() for md in mds})
    rows = (
        await session.execute(
            select(Customer.id, Customer.timezone, Customer.birthday_md)
            .where(Customer.birthday_md.in_(candidates), *_reachable(), Customer.id > after_id)
            .order_by(Customer.id)
            .limit(limit)
        )
    ).all()
    found = []
    for cid, zone, md in rows:
        local = as_of.astimezone(_zone(zone)).date()
        today = f"{local.month:02d}-{local.day:02d}"
        if md in celebrated.get(today, []) and _is_today(md, local):
            found.append((cid, local.year))
    return found, (rows[-1][0] if len(rows) == limit else None)


def _is_today(md: str, local: date) -> bool:
    return md == f"{local.month:02d}-{local.day:02d}" or (
        md == "02-29" and (local.month, local.day) == (2, 28) and not _leap(local.year)
    )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
