"""The mail figures of a journey, the way mail marketers read them: per step what was sent,
delivered and bounced, unique opens and clicks (a person's apart from a machine's), when they
came (days after the send, the customer's local hour), which links were clicked, which mail
clients opened, who left (unsubscribes, complaints), and what the converted customers bought.

Every figure is a GROUP BY in the database; what comes back is one row per group (steps,
days, hours, links, user agents, products), never one per send or event.

Sources and their terms:

- ``send_log`` (one row per decision): *sent* = handed to the relay (``sent``, ``uncertain``
  and ``bounced`` rows: a bounce is a send the relay refused); *bounced* = the relay's 5xx
  for a bad mailbox plus the bounces the shop reported later ("Email Bounced"); *delivered*
  = sent minus bounced.
- ``events``: "Email Opened" and "Email Link Clicked" carry the send's key (``send_key``),
  so they join their send exactly; ``engagement_class`` says whether a person or a machine
  (scanner, image proxy, prefetch) fetched it (core/engagement.py). *Unique* opens (clicks)
  are sends opened (clicked) at least once, counted per class (a person's and a machine's
  are kept apart, so one email may count in both). The event log keeps the first open of
  each email and the first click of each of its links (further ones only count as repeats),
  so *clicks per link* counts the emails in which that link was clicked.
- "Unsubscribed", "Email Marked as Spam" and "Email Bounced" carry no send: each counts for
  the last email the customer was sent before it (any journey), the usual attribution.
- The time of a send is when the relay accepted it (``sent_at``), else the journey's clock.

Longer than the ~400-line guide, on purpose: each figure is one short GROUP BY, and they
share the send-time, property and dialect helpers and the side-by-side runner; split by
figure, every part would import the same helpers back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Integer,
    Text,
    and_,
    cast,
    func,
    literal,
    literal_column,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Subquery

from store.db import SessionFactory
from store.models import Customer, Event, JourneyEntry, Order, Product, SendLog
from store.reports import CONTROL as CONTROL
from store.reports import TREATED as TREATED
from store.reports import _not_after

OPENED, CLICKED = "Email Opened", "Email Link Clicked"
ATTRIBUTED = {"Unsubscribed": "unsubscribes", "Email Marked as Spam": "complaints"}
REPORTED_BOUNCE = "Email Bounced"
HANDED_OVER = ("sent", "uncertain", "bounced")  # statuses of a send the relay was given
RECEIVED = ("sent", "uncertain")  # statuses of a send that may have reached the mailbox
HUMAN, MACHINE = "human", "machine"
EMAIL = "email"  # send_log.channel: the mail figures are email's (texts are counted apart)
USER_AGENT_KEY = "user_agent"  # where the tracking route keeps the request's user agent
UNCATEGORISED = "uncategorised"  # no category on the line nor in the catalogue
REPORT_WORK_MEM = "64MB"  # per sort or hash of a report query (PostgreSQL)
TOP_USER_AGENTS = 500  # distinct agents read per report (the rest count as "other")


@dataclass(frozen=True)
class ProductRow:
    sku: str
    name: str
    customers: int  # converted customers who bought it in the window
    quantity: int
    revenue: Decimal  # price x quantity as in the order lines


@dataclass(frozen=True)
class CategoryRow:
    category: str
    customers: int
    quantity: int
    revenue: Decimal


def _prop(dialect: str, column: Any, key: str) -> ColumnElement[str]:
    """A JSON property as text, with the key written into the SQL (not a parameter), so
    PostgreSQL can use an index on the same expression (migration 0013)."""
    if dialect == "postgresql":
        return column.op("->>")(literal_column(f"'{key}'"))  # type: ignore[no-any-return]
    return func.json_extract(column, literal_column(f"'$.{key}'"))


def _send_time() -> ColumnElement[datetime]:
    return func.coalesce(SendLog.sent_at, SendLog.decided_at)


def _dialect(s: AsyncSession) -> str:
    return s.get_bind().dialect.name


async def room_to_sort(s: AsyncSession) -> None:
    """PostgreSQL: let this transaction's sorts and hashes use memory (``work_mem``, 4 MB by
    default, spills a report's sorts to disk), and plan without JIT compilation (it spent
    0.1-0.3 s compiling each report statement, more than it saved); a no-op elsewhere."""
    if _dialect(s) == "postgresql":
        await s.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
        await s.execute(text("SET LOCAL jit = off"))


Read = Callable[[AsyncSession], Awaitable[Any]]


def side_by_side_possible(sessions: SessionFactory) -> bool:
    """PostgreSQL runs each connection's statement in a process of its own, so a report's
    independent statements can run at the same time on the server's cores; SQLite's report
    transactions take its one write lock (store.db), so there they run one after another."""
    return bool(sessions.kw["bind"].dialect.name == "postgresql")


async def side_by_side(sessions: SessionFactory, *reads: Read) -> list[Any]:
    """Each read in a transaction of its own (``room_to_sort``), all at once on PostgreSQL
    (each on its own connection), else one after another; their results in order."""

    async def alone(read: Read) -> Any:
        async with sessions() as s:
            await room_to_sort(s)
            return await read(s)

    if side_by_side_possible(sessions):
        return list(await asyncio.gather(*(alone(read) for read in reads)))
    return [await alone(read) for read in reads]


async def send_statuses(
    s: AsyncSession, *, journey: str, since: datetime | None = None
) -> dict[str, dict[str, int]]:
    """Per step: how many decisions of each ``send_log`` status (sent, uncertain, bounced,
    failed, skipped, held_out, sending)."""
    log = SendLog
    query = (
        select(log.step, log.status, func.count())
        .where(log.journey == journey, log.channel == EMAIL)
        .group_by(log.step, log.status)
    )
    if since is not None:
        query = query.where(log.decided_at >= since)
    out: dict[str, dict[str, int]] = {}
    for step, status, n in await s.execute(query):
        out.setdefault(step, {})[status] = int(n)
    return out


async def channels(
    s: AsyncSession, *, journey: str, since: datetime | None = None
) -> dict[str, dict[str, Any]]:
    """Per channel (``email``, ``sms``): ``statuses`` (decisions by ``send_log`` status),
    ``delivery`` (texts: the provider's callbacks, delivered / undelivered / failed),
    ``clicks`` and ``machine_clicks`` (sends clicked at least once, a person's / a machine's)
    and ``steps`` (the journey's steps on that channel)."""
    log, e = SendLog, Event
    out: dict[str, dict[str, Any]] = {}

    def of(channel: str) -> dict[str, Any]:
        return out.setdefault(
            channel,
            {"statuses": {}, "delivery": {}, "clicks": 0, "machine_clicks": 0, "steps": []},
        )

    where = [log.journey == journey] + ([log.decided_at >= since] if since is not None else [])
    by_status = (
        select(log.channel, log.step, log.status, log.delivery_status, func.count())
        .where(*where)
        .group_by(log.channel, log.step, log.status, log.delivery_status)
    )
    for channel, step, status, delivery, n in await s.execute(by_status):
        found = of(channel)
        found["statuses"][status] = found["statuses"].get(status, 0) + int(n)
        if delivery is not None:
            found["delivery"][delivery] = found["delivery"].get(delivery, 0) + int(n)
        if step not in found["steps"]:
            found["steps"].append(step)
    key = _prop(_dialect(s), e.properties, "send_key")
    clicked = (
        select(log.channel, e.engagement_class, func.count(func.distinct(log.id)))
        .join(log, log.idempotency_key == key)
        .where(e.name == CLICKED, *where)
        .group_by(log.channel, e.engagement_class)
    )
    for channel, kind, n in await s.execute(clicked):
        of(channel)["machine_clicks" if kind == "machine" else "clicks"] += int(n)
    for found in out.values():
        found["steps"].sort()
    return out


@dataclass
class Engagement:
    """Opens and clicks of a journey's sends, counted five ways (keys: event name, class)."""

    unique: dict[tuple[str, str, str], int]  # (step, name, class): sends opened / clicked
    by_day: dict[tuple[str, str, int], int]  # (name, class, days after the send): sends
    by_local_hour: dict[tuple[str, str, int], int]  # (name, class, customer's hour): events
    links: list[tuple[str, str, str, int]]  # (step, url, class, emails clicked), most first
    agents: list[tuple[str | None, str, int]]  # (user agent, class, opens), most first


def _engagement(dialect: str, journey: str, since: datetime | None) -> Any:
    """Opens and clicks of the journey's sends (a CTE, joined once per report): step, kind,
    class, the send's row id, when (event and send), customer's zone, link and user agent."""
    e, log = Event, SendLog
    key = _prop(dialect, e.properties, "send_key")
    query = (
        select(
            log.step.label("step"),
            e.name.label("name"),
            func.coalesce(e.engagement_class, HUMAN).label("cls"),
            log.id.label("send_id"),  # one per send, as its key; an integer sorts faster
            e.occurred_at.label("at"),
            _send_time().label("sent_at"),
            Customer.timezone.label("zone"),
            _prop(dialect, e.properties, "url").label("url"),
            _prop(dialect, e.properties, USER_AGENT_KEY).label("user_agent"),
        )
        .select_from(e)
        .join(log, log.idempotency_key == key)
        .join(Customer, Customer.id == log.customer_id)
        .where(e.name.in_((OPENED, CLICKED)), log.journey == journey, log.channel == EMAIL)
    )
    if since is not None:
        query = query.where(log.decided_at >= since)
    return query.cte("engagement")


async def engagement(s: AsyncSession, *, journey: str, since: datetime | None = None) -> Engagement:
    """The opens and clicks of the journey's sends, in one statement over one join:
    unique per step; per whole day after the send (0 = the first 24 hours; a fetch stamped
    before its send, clock skew, counts on day 0); per hour on the customer's clock
    (``customers.timezone``); per link (the emails in which it was clicked); per user agent
    (the ``TOP_USER_AGENTS`` most frequent, the rest as ``"other"``)."""
    dialect = _dialect(s)
    g = _engagement(dialect, journey, since).c
    distinct_sends = func.count(func.distinct(g.send_id))
    if dialect == "postgresql":
        days: Any = func.floor(func.extract("epoch", g.at - g.sent_at) / 86400)
        day = func.greatest(cast(days, Integer), 0)
        # the customer's clock: the hour itself
        hour: Any = cast(cast(func.extract("hour", func.timezone(g.zone, g.at)), Integer), Text)
        zone: Any = None
    else:  # SQLite's two-argument max() is greatest(); it has no time zones: count per UTC
        # hour and zone, moved to the zone's clock below (one row per zone and hour)
        day = func.max(cast(func.julianday(g.at) - func.julianday(g.sent_at), Integer), 0)
        hour = func.strftime("%Y-%m-%dT%H:00:00", g.at)
        zone = g.zone
    blank: Any = literal_column("''")
    by_hour = (g.name, g.cls, hour) if zone is None else (g.name, g.cls, hour, zone)
    parts = [
        select(literal("unique"), g.step, g.name, g.cls, blank, distinct_sends).group_by(
            g.step, g.name, g.cls
        ),
        select(literal("day"), g.name, g.cls, cast(day, Text), blank, distinct_sends).group_by(
            g.name, g.cls, day
        ),
        select(
            literal("hour"), g.name, g.cls, hour, blank if zone is None else zone, func.count()
        ).group_by(*by_hour),
        select(literal("link"), g.step, g.url, g.cls, blank, distinct_sends)
        .where(g.name == CLICKED, g.url.is_not(None))
        .group_by(g.step, g.url, g.cls),
        select(literal("agent"), g.user_agent, g.cls, blank, blank, func.count())
        .where(g.name == OPENED)
        .group_by(g.user_agent, g.cls),
    ]
    found = Engagement(unique={}, by_day={}, by_local_hour={}, links=[], agents=[])
    for part, a, b, c, d, n in await s.execute(union_all(*parts)):
        if part == "unique":
            found.unique[(a, b, c)] = int(n)
        elif part == "day":
            found.by_day[(a, b, int(c))] = int(n)
        elif part == "hour":
            h = int(c) if dialect == "postgresql" else _local_hour(c, d)
            found.by_local_hour[(a, b, h)] = found.by_local_hour.get((a, b, h), 0) + int(n)
        elif part == "link":
            found.links.append((a, b, c, int(n)))
        else:
            found.agents.append((a, b, int(n)))
    found.links.sort(key=lambda r: (-r[3], r[0], r[1]))
    found.agents.sort(key=lambda r: -r[2])
    if len(found.agents) > TOP_USER_AGENTS:
        rest: dict[str, int] = {}
        for _, cls, n in found.agents[TOP_USER_AGENTS:]:
            rest[cls] = rest.get(cls, 0) + n
        found.agents[TOP_USER_AGENTS:] = [("other", cls, n) for cls, n in rest.items()]
    return found


def _local_hour(utc_hour: str, zone: str | None) -> int:
    return datetime.fromisoformat(utc_hour + "+00:00").astimezone(ZoneInfo(zone or "UTC")).hour


async def attributed(
    s: AsyncSession, *, journey: str, since: datetime | None = None
) -> dict[tuple[str, str], int]:
    """Per (step, event name): unsubscribes, complaints and reported bounces whose
    customer's last email before the event was this journey's step."""
    e, log = Event, SendLog
    last = (
        select(log.id)
        .where(
            log.customer_id == e.customer_id,
            log.channel == EMAIL,
            log.status.in_(RECEIVED),
            _send_time() <= e.occurred_at,
        )
        .order_by(log.decided_at.desc(), log.id.desc())
        .limit(1)
        .correlate(e)
        .scalar_subquery()
    )
    events = (
        select(e.name.label("name"), last.label("send_id"))
        .where(e.name.in_([*ATTRIBUTED, REPORTED_BOUNCE]))
        .subquery("left_list")
    )
    query = (
        select(log.step, events.c.name, func.count())
        .select_from(events)
        .join(log, log.id == events.c.send_id)
        .where(log.journey == journey)
        .group_by(log.step, events.c.name)
    )
    if since is not None:
        query = query.where(log.decided_at >= since)
    return {(step, name): int(n) for step, name, n in await s.execute(query)}


# -- what the converted customers bought ------------------------------------------------------


def _items(dialect: str) -> tuple[Any, Any]:
    """The order lines (``orders.lines -> 'items'``) as a table function and its value."""
    if dialect == "postgresql":
        items = func.json_array_elements(Order.lines.op("->")(literal_column("'items'")))
        table = items.table_valued("value").alias("item")
        return table, table.c.value
    table = func.json_each(Order.lines, literal_column("'$.items'")).table_valued("value")
    each = table.alias("item")
    return each, each.c.value


def _item(dialect: str, value: Any, key: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return value.op("->>")(literal_column(f"'{key}'"))  # type: ignore[no-any-return]
    return func.json_extract(value, literal_column(f"'$.{key}'"))


def _first_entries(journey: str, since: datetime | None) -> Subquery:
    """Each customer's first entry into the journey (since ``since``), as the report counts."""
    e = JourneyEntry
    first = func.row_number().over(partition_by=e.customer_id, order_by=(e.entered_at, e.id))
    query = select(
        e.customer_id.label("customer_id"),
        e.group.label("grp"),
        e.entered_at.label("t0"),
        first.label("nth"),
    ).where(e.journey == journey)
    if since is not None:
        query = query.where(e.entered_at >= since)
    return query.subquery("entries")


@dataclass
class Bought:
    """What one group bought within one window: top products and categories."""

    products: list[ProductRow] = field(default_factory=list)
    categories: list[CategoryRow] = field(default_factory=list)


def _lines_bought(
    dialect: str, journey: str, windows: list[tuple[str, timedelta]], since: datetime | None
) -> Any:
    """The order lines the journey's customers bought after their first entry, one row per
    window they fall in (label, group, customer, sku, name, category, quantity, amount)."""
    o = Order
    table, value = _items(dialect)
    quantity = func.coalesce(cast(_item(dialect, value, "quantity"), Integer), 1)
    price = cast(_item(dialect, value, "price"), o.total.type)
    sku = _item(dialect, value, "sku")
    entries = _first_entries(journey, since)
    ec = entries.c
    longest = max(window for _, window in windows)
    # The orders within the longest window, read once; each window takes its part.
    orders = (
        select(
            ec.grp.label("grp"),
            ec.t0.label("t0"),
            o.customer_id.label("customer_id"),
            o.placed_at.label("placed_at"),
            sku.label("sku"),
            _item(dialect, value, "name").label("name"),
            func.coalesce(_item(dialect, value, "category"), Product.category, UNCATEGORISED).label(
                "category"
            ),
            quantity.label("quantity"),
            (func.coalesce(price, 0) * quantity).label("amount"),
        )
        .select_from(entries)
        .join(
            o,
            and_(
                o.customer_id == ec.customer_id,
                o.placed_at > ec.t0,
                _not_after(o.placed_at, ec.t0, longest, dialect),
            ),
        )
        .join(table, literal(True))
        .outerjoin(Product, Product.sku == sku)
        .where(ec.nth == 1)
        .cte("bought")
    )
    b = orders.c
    return union_all(
        *(
            select(
                literal(label).label("label"),
                b.grp,
                b.customer_id,
                b.sku,
                b.name,
                b.category,
                b.quantity,
                b.amount,
            ).where(_not_after(b.placed_at, b.t0, window, dialect))
            for label, window in windows
        )
    ).subquery("in_window")


# Longer than the ~60-line guide: one statement (products and categories ranked per window and
# group) and its reading
async def bought(
    s: AsyncSession,
    *,
    journey: str,
    windows: list[tuple[str, timedelta]],
    since: datetime | None = None,
    limit: int = 10,
) -> dict[tuple[str, str], Bought]:
    """Per (window label, group): the products and the categories (the line's, else the
    catalogue's) that the journey's converted customers bought within the window after
    entering, ranked by customers, then quantity; the first ``limit`` of each. One
    statement for every window."""
    b = _lines_bought(_dialect(s), journey, windows, since).c
    customers = func.count(func.distinct(b.customer_id))
    quantity = func.sum(b.quantity)
    ranked = [
        select(
            literal(kind).label("kind"),
            b.label,
            b.grp,
            key.label("key"),
            func.max(b.name if kind == "product" else b.category).label("name"),
            customers.label("customers"),
            quantity.label("quantity"),
            func.sum(b.amount).label("revenue"),
            func.row_number()
            .over(partition_by=(b.label, b.grp), order_by=(customers.desc(), quantity.desc(), key))
            .label("rank"),
        ).group_by(b.label, b.grp, key)
        for kind, key in (("product", b.sku), ("category", b.category))
    ]
    r = union_all(*ranked).subquery("ranked").c
    query = select(r.kind, r.label, r.grp, r.key, r.name, r.customers, r.quantity, r.revenue).where(
        r.rank <= limit
    )
    out: dict[tuple[str, str], Bought] = {
        (label, grp): Bought() for label, _ in windows for grp in (TREATED, CONTROL)
    }
    rows = sorted(
        await s.execute(query),
        key=lambda row: (-int(row.customers), -int(row.quantity or 0), str(row.key)),
    )
    for kind, label, grp, key, name, n, qty, revenue in rows:
        found = out.setdefault((label, grp), Bought())
        if kind == "product":
            found.products.append(
                ProductRow(
                    sku=str(key),
                    name=str(name or key),
                    customers=int(n),
                    quantity=int(qty or 0),
                    revenue=_money(revenue),
                )
            )
        else:
            found.categories.append(
                CategoryRow(
                    category=str(key),
                    customers=int(n),
                    quantity=int(qty or 0),
                    revenue=_money(revenue),
                )
            )
    return out


# -- for the app's metrics (observability.py) -------------------------------------------------


async def entered_before(
    s: AsyncSession, *, customer_id: str, placed_at: datetime, within: timedelta
) -> list[tuple[str, str]]:
    """(journey, group) of the journeys the customer entered within ``within`` before an
    order placed at ``placed_at``: what the order is a conversion of."""
    e = JourneyEntry
    query = (
        select(e.journey, e.group)
        .where(
            e.customer_id == customer_id,
            e.entered_at < placed_at,
            e.entered_at >= placed_at - within,
        )
        .distinct()
    )
    return [(journey, group) for journey, group in await s.execute(query)]


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))
