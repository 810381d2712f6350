"""The daily sweep's selections: set-based SQL over indexed columns, one keyset page at a
time (``id > after ORDER BY id LIMIT n``), so a million customers are never in memory."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    Select,
    and_,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from journeys.config import SweepSelection
from store.db import insert_for
from store.models import Customer, Event, Order, SendLog, Suppression, SuppressionReason

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


# -- the engagement sunset (list hygiene across journeys) -------------------------------------

ENGAGEMENT_EVENTS = ("Email Opened", "Email Link Clicked")
# Events that say "keep writing to me" without an open or click: a re-subscribe, a confirmed
# double opt-in, a sunset lifted by the "keep writing" button (starter/ingest/consent.py).
CONSENT_EVENTS = ("Subscribed", "Subscription Confirmed", "Sunset Lifted")
SUNSET_SOURCE = "engagement sunset"


@dataclass(frozen=True)
class SunsetRule:
    """Sunset an address with no sign of life (a human open or click, an order, a
    re-subscribe) in its last ``after_emails`` marketing emails and in the last ``after``;
    ``not_marketing``: templates of transactional steps, which do not count as emails."""

    after_emails: int
    after: timedelta
    not_marketing: frozenset[str] = frozenset()

    @property
    def enabled(self) -> bool:
        return self.after_emails > 0

    def describe(self) -> str:
        return (
            f"no human open or click, order or re-subscribe in the last {self.after_emails} "
            f"marketing emails and {self.after.days} days"
        )


def human_engagement() -> ColumnElement[bool]:
    """An open or click that is a person's: classified human (core/engagement.py; ``None``:
    recorded before classification, counted as it always was) and not a click of a list
    link (unsubscribe, report, "keep writing"). The SQL twin of
    ``store.events.counts_as_reaction``."""
    return and_(
        Event.name.in_(ENGAGEMENT_EVENTS),
        or_(Event.engagement_class.is_(None), Event.engagement_class == "human"),
        func.coalesce(Event.properties["list_link"].as_boolean(), false()).is_(false()),
    )


def _last_sign_of_life() -> ScalarSelect[datetime]:
    """When the customer last engaged (a human open or click) or said "keep writing"."""
    return (
        select(func.max(Event.occurred_at))
        .where(
            Event.customer_id == Customer.id,
            or_(human_engagement(), Event.name.in_(CONSENT_EVENTS)),
        )
        .correlate(Customer)
        .scalar_subquery()
    )


def unengaged_query(*, as_of: datetime, rule: SunsetRule, after_id: str, limit: int) -> Select[str]:
    """Reachable customers to sunset at ``as_of``, one keyset page: known for ``rule.after``
    at least, no sign of life within it, and ``rule.after_emails`` marketing emails sent
    (wall clock) after their last sign of life and their last order."""
    since = as_of - rule.after
    life = _last_sign_of_life()
    mailed = [
        SendLog.customer_id == Customer.id,
        SendLog.status == "sent",
        SendLog.sent_at <= as_of,
        or_(life.is_(None), SendLog.sent_at > life),
        or_(Customer.last_order_at.is_(None), SendLog.sent_at > Customer.last_order_at),
    ]
    if rule.not_marketing:
        mailed.append(SendLog.template.not_in(sorted(rule.not_marketing)))
    unanswered = select(func.count(SendLog.id)).where(*mailed).correlate(Customer).scalar_subquery()
    return (
        select(Customer.id)
        .where(
            *_reachable(),
            Customer.id > after_id,
            Customer.created_at <= since,
            or_(Customer.last_order_at.is_(None), Customer.last_order_at < since),
            or_(life.is_(None), life < since),
            unanswered >= rule.after_emails,
        )
        .order_by(Customer.id)
        .limit(limit)
    )


async def unengaged_page(
    session: AsyncSession, *, as_of: datetime, rule: SunsetRule, after_id: str, limit: int
) -> list[str]:
    rows = await session.scalars(
        unengaged_query(as_of=as_of, rule=rule, after_id=after_id, limit=limit)
    )
    return list(rows)


async def sunset_unengaged(
    session: AsyncSession, *, customer_ids: list[str], detail: str, at: datetime
) -> None:
    """Suppress these customers' addresses for "sunset" (source ``SUNSET_SOURCE``) in two
    statements. They had no suppression when selected; one that got another reason since
    keeps it (sunset is the weakest), so both inserts leave rows that are there alone."""
    if not customer_ids:
        return
    chosen = select(
        func.lower(Customer.email),
        literal("sunset"),
        literal(SUNSET_SOURCE),
        literal(detail),
        Customer.id,
        literal(at, SuppressionReason.created_at.type),
    ).where(Customer.id.in_(customer_ids))
    reasons = insert_for(session)(SuppressionReason).from_select(
        ["email", "reason", "source", "detail", "customer_id", "created_at"], chosen
    )
    await session.execute(
        reasons.on_conflict_do_nothing(
            index_elements=[SuppressionReason.email, SuppressionReason.reason]
        )
    )
    shown = select(
        func.lower(Customer.email),
        Customer.id,
        literal("sunset"),
        literal(detail),
        literal(at, Suppression.created_at.type),
    ).where(Customer.id.in_(customer_ids))
    rows = insert_for(session)(Suppression).from_select(
        ["email", "customer_id", "reason", "detail", "created_at"], shown
    )
    await session.execute(rows.on_conflict_do_nothing(index_elements=[Suppression.email]))
