"""The effect report's data: journey entries (who entered when, treated or control) and the
set-based counts of conversions after them. Every figure is one GROUP BY in the database;
no rows are loaded into Python.

A customer counts once per journey (their first entry since ``since``); for a step, once
per step (their first send or would-be send of it). An order converts when it is placed
(``orders.placed_at``, the event's own time) after that moment and within the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import ColumnElement, Float, and_, case, func, literal, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Subquery

from store.models import Event, JourneyEntry, Order, SendLog

TREATED, CONTROL = "treated", "control"
# A step's own control group: customers held out of just this step (reason step_holdout).
STEP_CONTROL = "step_control"
# A step's send log status and the group it stands for.
STEP_GROUPS = {"sent": TREATED, "held_out": CONTROL}
# What counts as engagement with one email: human opens and clicks only (machine ones, once
# classified, are left out); a click counts as an open too (its images may be blocked).
OPENS = ("Email Opened", "Email Link Clicked")
CLICKS = ("Email Link Clicked",)


@dataclass(frozen=True)
class Counts:
    customers: int = 0
    converted: int = 0  # customers with at least one order in the window
    orders: int = 0
    revenue: Decimal = Decimal(0)
    still_open: int = 0  # customers whose window has not ended yet at ``as_of``


async def record_entry(
    s: AsyncSession,
    *,
    customer_id: str,
    journey: str,
    workflow_id: str,
    run_chain_id: str,
    entered_at: datetime,
    group: str,
    holdout_share: float,
    journey_version: int,
) -> None:
    """Once per run: a second call for the same run changes nothing."""
    found = await s.scalar(
        select(JourneyEntry.id).where(
            JourneyEntry.workflow_id == workflow_id, JourneyEntry.run_chain_id == run_chain_id
        )
    )
    if found is not None:
        return
    try:
        async with s.begin_nested():
            s.add(
                JourneyEntry(
                    customer_id=customer_id,
                    journey=journey,
                    workflow_id=workflow_id,
                    run_chain_id=run_chain_id,
                    entered_at=entered_at,
                    group=group,
                    holdout_share=holdout_share,
                    journey_version=journey_version,
                )
            )
    except IntegrityError:
        pass  # recorded meanwhile by another attempt of the same activity


async def journeys_entered(s: AsyncSession, *, since: datetime | None = None) -> list[str]:
    query = select(JourneyEntry.journey).distinct().order_by(JourneyEntry.journey)
    if since is not None:
        query = query.where(JourneyEntry.entered_at >= since)
    return list(await s.scalars(query))


async def entry_counts(
    s: AsyncSession,
    *,
    journey: str,
    window: timedelta,
    as_of: datetime,
    since: datetime | None = None,
) -> dict[str, Counts]:
    """Per group (treated, control): customers, converted, orders, revenue in ``window``."""
    found = await entry_counts_per_window(
        s, journey=journey, windows=[window], as_of=as_of, since=since
    )
    return found[0]


async def entry_counts_per_window(
    s: AsyncSession,
    *,
    journey: str,
    windows: Sequence[timedelta],
    as_of: datetime,
    since: datetime | None = None,
) -> list[dict[str, Counts]]:
    """``entry_counts`` for each of ``windows``, in one statement (one read of the entries)."""
    e = JourneyEntry
    first = func.row_number().over(partition_by=e.customer_id, order_by=(e.entered_at, e.id))
    entries = select(
        e.customer_id.label("customer_id"),
        e.group.label("grp"),
        e.entered_at.label("t0"),
        literal("").label("step"),
        first.label("nth"),
        e.id.label("rid"),
    ).where(e.journey == journey)
    if since is not None:
        entries = entries.where(e.entered_at >= since)
    per_window = await _convert(s, entries.subquery("entries"), windows=windows, as_of=as_of)
    return [{grp: counts for (_, grp), counts in rows.items()} for rows in per_window]


async def step_counts(
    s: AsyncSession,
    *,
    journey: str,
    window: timedelta,
    as_of: datetime,
    since: datetime | None = None,
) -> dict[tuple[str, str], Counts]:
    """Per (step, group): after the step's send (treated) or would-be send (held out: the
    journey's control group, or ``STEP_CONTROL`` for the step's own holdout)."""
    found = await step_counts_per_window(
        s, journey=journey, windows=[window], as_of=as_of, since=since
    )
    return found[0]


async def step_counts_per_window(
    s: AsyncSession,
    *,
    journey: str,
    windows: Sequence[timedelta],
    as_of: datetime,
    since: datetime | None = None,
) -> list[dict[tuple[str, str], Counts]]:
    """``step_counts`` for each of ``windows``, in one statement (one read of the send log)."""
    log = SendLog
    first = func.row_number().over(
        partition_by=(log.customer_id, log.step), order_by=(log.decided_at, log.id)
    )
    group = case(
        (log.reason_code == "step_holdout", literal(STEP_CONTROL)),
        *((log.status == st, literal(g)) for st, g in STEP_GROUPS.items()),
    )
    sends = select(
        log.customer_id.label("customer_id"),
        group.label("grp"),
        log.decided_at.label("t0"),
        log.step.label("step"),
        first.label("nth"),
        log.id.label("rid"),
    ).where(log.journey == journey, log.status.in_(list(STEP_GROUPS)))
    if since is not None:
        sends = sends.where(log.decided_at >= since)
    return await _convert(s, sends.subquery("sends"), windows=windows, as_of=as_of)


# -- A/B tests: per variant of a step ------------------------------------------------------


@dataclass(frozen=True)
class Engagement:
    sends: int = 0  # emails of the variant that went out
    opens: int = 0  # of them, opened (a human open or click)
    clicks: int = 0  # of them, clicked (a human click)


def _engaged(log: type[SendLog], names: tuple[str, ...]) -> ColumnElement[bool]:
    """A human open/click event (``names``) on this send log row's email (by its key)."""
    e = Event
    return (
        select(literal(1))
        .where(
            e.customer_id == log.customer_id,
            e.name.in_(names),
            e.properties["send_key"].as_string() == log.idempotency_key,
            func.coalesce(e.engagement_class, "human") == "human",
        )
        .exists()
    )


async def variant_engagement(
    s: AsyncSession, *, journey: str, step: str | None = None, since: datetime | None = None
) -> dict[tuple[str, str], Engagement]:
    """Per (step, variant) of A/B-tested steps: sends, unique opens, unique clicks."""
    log = SendLog
    query = (
        select(
            log.step,
            log.variant,
            func.count().label("sends"),
            func.sum(case((_engaged(log, OPENS), 1), else_=0)).label("opens"),
            func.sum(case((_engaged(log, CLICKS), 1), else_=0)).label("clicks"),
        )
        .where(log.journey == journey, log.variant.is_not(None), log.status == "sent")
        .group_by(log.step, log.variant)
    )
    if step is not None:
        query = query.where(log.step == step)
    if since is not None:
        query = query.where(log.decided_at >= since)
    return {
        (row.step, row.variant): Engagement(
            sends=int(row.sends), opens=int(row.opens or 0), clicks=int(row.clicks or 0)
        )
        for row in await s.execute(query)
    }


async def variant_counts(
    s: AsyncSession,
    *,
    journey: str,
    window: timedelta,
    as_of: datetime,
    since: datetime | None = None,
) -> dict[tuple[str, str], Counts]:
    """Per (step, variant): the customers a variant went to and their orders in ``window``
    after it (each customer once per step: their first send of it)."""
    found = await variant_counts_per_window(
        s, journey=journey, windows=[window], as_of=as_of, since=since
    )
    return found[0]


async def variant_counts_per_window(
    s: AsyncSession,
    *,
    journey: str,
    windows: Sequence[timedelta],
    as_of: datetime,
    since: datetime | None = None,
) -> list[dict[tuple[str, str], Counts]]:
    """``variant_counts`` for each of ``windows``, in one statement."""
    log = SendLog
    first = func.row_number().over(
        partition_by=(log.customer_id, log.step), order_by=(log.decided_at, log.id)
    )
    sends = select(
        log.customer_id.label("customer_id"),
        log.variant.label("grp"),
        log.decided_at.label("t0"),
        log.step.label("step"),
        first.label("nth"),
        log.id.label("rid"),
    ).where(log.journey == journey, log.variant.is_not(None), log.status == "sent")
    if since is not None:
        sends = sends.where(log.decided_at >= since)
    return await _convert(s, sends.subquery("variant_sends"), windows=windows, as_of=as_of)


# Longer than the ~60-line guide: one SQL statement for every window (BENCHMARKS.md 7-report);
# split, it would be read once per window again
async def _convert(
    s: AsyncSession, cohort: Subquery, *, windows: Sequence[timedelta], as_of: datetime
) -> list[dict[tuple[str, str], Counts]]:
    """Conversions of a cohort (customer_id, grp, t0, step, nth, rid: the row's id) in each
    of ``windows``, in one statement over the cohort's first rows (``nth = 1``, read once
    for every window): everyone counted per (step, grp), and apart from that only the
    customers with orders within the longest window grouped per cohort row (by ``rid``),
    each window's orders counted by a filter on that one join (so the big cohort is never
    sorted or grouped per customer, nor read once per window; BENCHMARKS.md 7-report)."""
    c, o = cohort.c, Order
    dialect = s.get_bind().dialect.name
    first = select(c.customer_id, c.grp, c.t0, c.step, c.rid).where(c.nth == 1).cte("first_rows")
    f = first.c
    longest = max(windows)
    within = [_not_after(o.placed_at, f.t0, window, dialect) for window in windows]
    in_window = and_(
        o.customer_id == f.customer_id,
        o.placed_at > f.t0,
        _not_after(o.placed_at, f.t0, longest, dialect),
    )
    bought = (
        select(
            f.step,
            f.grp,
            *(
                column
                for i, inside in enumerate(within)
                for column in (
                    func.sum(case((inside, 1), else_=0)).label(f"orders_{i}"),
                    func.sum(case((inside, o.total), else_=None)).label(f"revenue_{i}"),
                )
            ),
        )
        .select_from(first)
        .join(o, in_window)
        # per cohort row (one per customer and step), by its integer id: sorting the text
        # customer ids was most of this statement's time (BENCHMARKS.md 7-report)
        .group_by(f.rid, f.step, f.grp)
        .subquery("bought")
    )
    b = bought.c
    zero = literal(0)
    everyone = select(
        literal("all").label("kind"),
        f.step,
        f.grp,
        func.count().label("customers"),
        *(
            column
            for i, window in enumerate(windows)
            for column in (
                func.sum(case((f.t0 > as_of - window, 1), else_=0)).label(f"still_open_{i}"),
                zero.label(f"converted_{i}"),
                zero.label(f"orders_{i}"),
                zero.label(f"revenue_{i}"),
            )
        ),
    ).group_by(f.step, f.grp)
    buyers = select(
        literal("bought"),
        b.step,
        b.grp,
        zero,
        *(
            column
            for i in range(len(windows))
            for column in (
                zero,
                func.sum(case((b[f"orders_{i}"] > 0, 1), else_=0)),
                func.sum(b[f"orders_{i}"]),
                func.sum(b[f"revenue_{i}"]),
            )
        ),
    ).group_by(b.step, b.grp)
    found: list[dict[tuple[str, str], dict[str, Any]]] = [{} for _ in windows]
    for kind, step, grp, customers, *per_window in await s.execute(union_all(everyone, buyers)):
        for i, rows in enumerate(found):
            still_open, converted, orders, revenue = per_window[4 * i : 4 * i + 4]
            row = rows.setdefault((step, grp), {})
            if kind == "all":
                row.update(customers=int(customers), still_open=int(still_open or 0))
            elif converted:
                row.update(converted=int(converted), orders=int(orders or 0), revenue=revenue)
    return [
        {
            key: Counts(
                customers=row.get("customers", 0),
                converted=row.get("converted", 0),
                orders=row.get("orders", 0),
                revenue=_money(row.get("revenue")),
                still_open=row.get("still_open", 0),
            )
            for key, row in rows.items()
        }
        for rows in found
    ]


def _not_after(placed: Any, start: Any, window: timedelta, dialect: str) -> ColumnElement[bool]:
    """placed <= start + window, in the database's own date arithmetic."""
    seconds = window.total_seconds()
    if dialect == "postgresql":
        end = start + func.make_interval(0, 0, 0, 0, 0, 0, literal(seconds, Float))
        return cast(ColumnElement[bool], placed <= end)
    # SQLite keeps times as text: compare as Julian days (about a millisecond of precision).
    return func.julianday(placed) <= func.julianday(start) + seconds / 86400.0


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))
