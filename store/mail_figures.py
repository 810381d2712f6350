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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    cast,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Subquery

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
USER_AGENT_KEY = "user_agent"  # where the tracking route keeps the request's user agent
UNCATEGORISED = "uncategorised"  # no category on the line nor in the catalogue
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


async def send_statuses(
    s: AsyncSession, *, journey: str, since: datetime | None = None
) -> dict[str, dict[str, int]]:
    """Per step: how many decisions of each ``send_log`` status (sent, uncertain, bounced,
    failed, skipped, held_out, sending)."""
    log = SendLog
    query = (
        select(log.step, log.status, func.count())
        .where(log.journey == journey)
        .group_by(log.step, log.status)
    )
    if since is not None:
        query = query.where(log.decided_at >= since)
    out: dict[str, dict[str, int]] = {}
    for step, status, n in await s.execute(query):
        out.setdefault(step, {})[status] = int(n)
    return out


def _engagement(dialect: str, journey: str, since: datetime | None) -> Subquery:
    """Opens and clicks of the journey's sends: step, kind, class, send key, when (event and
    send), customer, link and user agent."""
    e, log = Event, SendLog
    key = _prop(dialect, e.properties, "send_key")
    query = (
        select(
            log.step.label("step"),
            e.name.label("name"),
            func.coalesce(e.engagement_class, HUMAN).label("cls"),
            log.idempotency_key.label("send_key"),
            e.occurred_at.label("at"),
            _send_time().label("sent_at"),
            e.customer_id.label("customer_id"),
            _prop(dialect, e.properties, "url").label("url"),
            _prop(dialect, e.properties, USER_AGENT_KEY).label("user_agent"),
        )
        .select_from(e)
        .join(log, log.idempotency_key == key)
        .where(e.name.in_((OPENED, CLICKED)), log.journey == journey)
    )
    if since is not None:
        query = query.where(log.decided_at >= since)
    return query.subquery("engagement")


async def unique_engagement(
    s: AsyncSession, *, journey: str, since: datetime | None = None
) -> dict[tuple[str, str, str], int]:
    """Per (step, event name, class): sends opened / clicked at least once."""
    g = _engagement(_dialect(s), journey, since).c
    query = select(g.step, g.name, g.cls, func.count(func.distinct(g.send_key))).group_by(
        g.step, g.name, g.cls
    )
    return {(step, name, cls): int(n) for step, name, cls, n in await s.execute(query)}


async def engagement_by_day(
    s: AsyncSession, *, journey: str, since: datetime | None = None
) -> dict[tuple[str, str, int], int]:
    """Per (event name, class, whole days after the send; 0 = the first 24 hours): unique
    opens / clicks. A fetch stamped before its send (clock skew) counts on day 0."""
    dialect = _dialect(s)
    g = _engagement(dialect, journey, since).c
    if dialect == "postgresql":
        days: Any = func.floor(func.extract("epoch", g.at - g.sent_at) / 86400)
    else:
        days = func.julianday(g.at) - func.julianday(g.sent_at)
    # before its send (clock skew): day 0. SQLite's two-argument max() is its greatest().
    day = (func.greatest if dialect == "postgresql" else func.max)(cast(days, Integer), 0)
    query = select(g.name, g.cls, day.label("day"), func.count(func.distinct(g.send_key))).group_by(
        g.name, g.cls, literal_column("day")
    )
    return {(name, cls, int(d)): int(n) for name, cls, d, n in await s.execute(query)}


async def engagement_by_local_hour(
    s: AsyncSession, *, journey: str, since: datetime | None = None
) -> dict[tuple[str, str, int], int]:
    """Per (event name, class, hour 0-23 on the customer's clock, ``customers.timezone``):
    opens / clicks (each email's first of each kind)."""
    dialect = _dialect(s)
    g = _engagement(dialect, journey, since)
    c = g.c
    zone = Customer.timezone
    if dialect == "postgresql":
        hour = cast(func.extract("hour", func.timezone(zone, c.at)), Integer).label("hour")
        query = (
            select(c.name, c.cls, hour, func.count())
            .select_from(g)
            .join(Customer, Customer.id == c.customer_id)
            .group_by(c.name, c.cls, literal_column("hour"))
        )
        return {(name, cls, int(h)): int(n) for name, cls, h, n in await s.execute(query)}
    # SQLite has no time zones: count per UTC hour and zone, then move each hour to the
    # zone's clock here (one row per zone and hour, not per event).
    from zoneinfo import ZoneInfo

    utc_hour = func.strftime("%Y-%m-%dT%H:00:00", c.at).label("utc_hour")
    query = (
        select(c.name, c.cls, zone, utc_hour, func.count())
        .select_from(g)
        .join(Customer, Customer.id == c.customer_id)
        .group_by(c.name, c.cls, zone, literal_column("utc_hour"))
    )
    out: dict[tuple[str, str, int], int] = {}
    for name, cls, tz, at, n in await s.execute(query):
        local = datetime.fromisoformat(at + "+00:00").astimezone(ZoneInfo(tz or "UTC"))
        out[(name, cls, local.hour)] = out.get((name, cls, local.hour), 0) + int(n)
    return out


async def clicks_by_link(
    s: AsyncSession, *, journey: str, since: datetime | None = None
) -> list[tuple[str, str, str, int]]:
    """(step, link, class, emails in which the link was clicked), most clicked first."""
    g = _engagement(_dialect(s), journey, since).c
    n = func.count(func.distinct(g.send_key))
    query = (
        select(g.step, g.url, g.cls, n)
        .where(g.name == CLICKED, g.url.is_not(None))
        .group_by(g.step, g.url, g.cls)
        .order_by(n.desc(), g.step, g.url)
    )
    return [(step, url, cls, int(count)) for step, url, cls, count in await s.execute(query)]


async def opens_by_user_agent(
    s: AsyncSession, *, journey: str, since: datetime | None = None
) -> list[tuple[str | None, str, int]]:
    """(user agent, class, opens) for the ``TOP_USER_AGENTS`` most frequent agents, and one
    row with agent ``"other"`` for the rest: the mail client family is read from these few
    strings (starter side), never per open."""
    g = _engagement(_dialect(s), journey, since).c
    n = func.count()
    query = (
        select(g.user_agent, g.cls, n)
        .where(g.name == OPENED)
        .group_by(g.user_agent, g.cls)
        .order_by(n.desc())
    )
    rows = [(ua, cls, int(count)) for ua, cls, count in await s.execute(query)]
    if len(rows) <= TOP_USER_AGENTS:
        return rows
    rest: dict[str, int] = {}
    for _, cls, count in rows[TOP_USER_AGENTS:]:
        rest[cls] = rest.get(cls, 0) + count
    return rows[:TOP_USER_AGENTS] + [("other", cls, count) for cls, count in rest.items()]


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


def _bought(dialect: str, journey: str, window: timedelta, since: datetime | None) -> Subquery:
    """The order lines the journey's customers bought within ``window`` after their first
    entry: group, customer, sku, name, category, quantity, amount."""
    o = Order
    table, value = _items(dialect)
    quantity = func.coalesce(cast(_item(dialect, value, "quantity"), Integer), 1)
    price = cast(_item(dialect, value, "price"), o.total.type)
    sku = _item(dialect, value, "sku")
    entries = _first_entries(journey, since)
    ec = entries.c
    query = (
        select(
            ec.grp.label("grp"),
            o.customer_id.label("customer_id"),
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
                _not_after(o.placed_at, ec.t0, window, dialect),
            ),
        )
        .join(table, literal(True))
        .outerjoin(Product, Product.sku == sku)
        .where(ec.nth == 1)
    )
    return query.subquery("bought")


async def top_products(
    s: AsyncSession,
    *,
    journey: str,
    window: timedelta,
    since: datetime | None = None,
    limit: int = 10,
) -> dict[str, list[ProductRow]]:
    """Per group (treated, control): the products the journey's converted customers bought
    within ``window`` after entering, by customers then quantity."""
    b = _bought(_dialect(s), journey, window, since).c
    customers = func.count(func.distinct(b.customer_id))
    ranked = (
        select(
            b.grp,
            b.sku,
            func.max(b.name).label("name"),
            customers.label("customers"),
            func.sum(b.quantity).label("quantity"),
            func.sum(b.amount).label("revenue"),
            func.row_number()
            .over(
                partition_by=b.grp, order_by=(customers.desc(), func.sum(b.quantity).desc(), b.sku)
            )
            .label("rank"),
        )
        .group_by(b.grp, b.sku)
        .subquery("ranked")
    )
    r = ranked.c
    query = (
        select(r.grp, r.sku, r.name, r.customers, r.quantity, r.revenue)
        .where(r.rank <= limit)
        .order_by(r.grp, r.rank)
    )
    out: dict[str, list[ProductRow]] = {TREATED: [], CONTROL: []}
    for grp, sku, name, n, quantity, revenue in await s.execute(query):
        out.setdefault(grp, []).append(
            ProductRow(
                sku=str(sku),
                name=str(name or sku),
                customers=int(n),
                quantity=int(quantity or 0),
                revenue=_money(revenue),
            )
        )
    return out


async def top_categories(
    s: AsyncSession,
    *,
    journey: str,
    window: timedelta,
    since: datetime | None = None,
    limit: int = 10,
) -> dict[str, list[CategoryRow]]:
    """Per group: the categories (the line's, else the catalogue's) bought, as above."""
    b = _bought(_dialect(s), journey, window, since).c
    customers = func.count(func.distinct(b.customer_id))
    ranked = (
        select(
            b.grp,
            b.category,
            customers.label("customers"),
            func.sum(b.quantity).label("quantity"),
            func.sum(b.amount).label("revenue"),
            func.row_number()
            .over(partition_by=b.grp, order_by=(customers.desc(), b.category))
            .label("rank"),
        )
        .group_by(b.grp, b.category)
        .subquery("ranked")
    )
    r = ranked.c
    query = (
        select(r.grp, r.category, r.customers, r.quantity, r.revenue)
        .where(r.rank <= limit)
        .order_by(r.grp, r.rank)
    )
    out: dict[str, list[CategoryRow]] = {TREATED: [], CONTROL: []}
    for grp, category, n, quantity, revenue in await s.execute(query):
        out.setdefault(grp, []).append(
            CategoryRow(
                category=str(category),
                customers=int(n),
                quantity=int(quantity or 0),
                revenue=_money(revenue),
            )
        )
    return out


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))
