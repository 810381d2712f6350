"""Lifecycle stages in the store: one customer's facts (for the order path), and the daily
sweep's set-based update, one keyset page at a time. The SQL states the thresholds of
core/lifecycle.py as a CASE over indexed columns; tests hold the two to the same table
(tests/test_lifecycle_stages.py).

The caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.lifecycle import CustomerFacts, LifecycleConfig, label
from journeys.config import TouchBudget
from store.models import Customer, Event, Order, SendLog
from store.sends import GOING_OUT
from store.sweep import _reachable as reachable

# Events that show a person engaged (a prospect who engages is not lost).
ENGAGEMENT_EVENTS = ("Email Opened", "Email Link Clicked")


async def spend(session: AsyncSession, *, customer_id: str) -> Decimal:
    """The customer's lifetime order totals."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Order.total), 0)).where(Order.customer_id == customer_id)
    )
    return Decimal(total or 0)


async def facts(session: AsyncSession, customer: Customer) -> CustomerFacts:
    """What the stage of ``customer`` is computed from (a buyer's engagement does not count:
    their stage goes by orders)."""
    engaged = None
    if customer.order_count == 0:
        engaged = await session.scalar(
            select(func.max(Event.occurred_at)).where(
                Event.customer_id == customer.id, Event.name.in_(ENGAGEMENT_EVENTS)
            )
        )
    return CustomerFacts(
        signed_up_at=customer.created_at,
        order_count=customer.order_count,
        last_order_at=customer.last_order_at,
        spend=await spend(session, customer_id=customer.id),
        last_engaged_at=engaged,
    )


def stage_case(as_of: datetime, config: LifecycleConfig) -> ColumnElement[str]:
    """``core.lifecycle.stage_of`` as SQL over a ``customers`` row."""
    b = config.stages
    last = Customer.last_order_at
    prospect_cutoff = as_of - b.prospect_lost_after
    engaged_lately = exists().where(
        Event.customer_id == Customer.id,
        Event.name.in_(ENGAGEMENT_EVENTS),
        Event.occurred_at > prospect_cutoff,
    )
    return case(
        (
            or_(Customer.order_count == 0, last.is_(None)),
            case(
                (and_(Customer.created_at <= prospect_cutoff, ~engaged_lately), "lost"),
                else_="prospect",
            ),
        ),
        (and_(Customer.order_count == 1, last > as_of - b.new_until), "new"),
        (last > as_of - b.active_until, "active"),
        (last > as_of - b.repurchase_until, "repurchase_window"),
        (last > as_of - b.silent_until, "silent"),
        (last > as_of - b.sleeping_until, "sleeping"),
        else_="lost",
    )


def vip_condition(config: LifecycleConfig) -> ColumnElement[bool]:
    """``core.lifecycle.is_vip`` as SQL over a ``customers`` row."""
    rule = config.vip
    conditions: list[ColumnElement[bool]] = []
    if rule.min_orders is not None:
        conditions.append(Customer.order_count >= rule.min_orders)
    if rule.min_spend is not None:
        total = (
            select(func.coalesce(func.sum(Order.total), 0))
            .where(Order.customer_id == Customer.id)
            .scalar_subquery()
        )
        conditions.append(total >= rule.min_spend)
    return or_(*conditions) if conditions else and_(Customer.id.is_(None))


@dataclass(frozen=True)
class StageChange:
    customer_id: str
    previous: str | None
    stage: str
    vip: bool
    became_vip: bool


@dataclass(frozen=True)
class RefreshedPage:
    looked_at: int
    changes: list[StageChange]
    next_after: str | None  # the last id looked at; None after the last page


async def refresh_page(
    session: AsyncSession, *, as_of: datetime, config: LifecycleConfig, after_id: str, limit: int
) -> RefreshedPage:
    """Recompute the stage of one keyset page of customers (``id > after_id``, ``limit``
    rows) set-based: one SELECT of the rows whose stage or VIP flag changes, one UPDATE of
    them."""
    ids = list(
        await session.scalars(
            select(Customer.id).where(Customer.id > after_id).order_by(Customer.id).limit(limit)
        )
    )
    if not ids:
        return RefreshedPage(0, [], None)
    new_stage = stage_case(as_of, config)
    vip = vip_condition(config)
    changed = (
        await session.execute(
            select(Customer.id, Customer.stage, new_stage, vip, Customer.vip_since).where(
                Customer.id.in_(ids),
                or_(
                    Customer.stage.is_distinct_from(new_stage),
                    and_(vip, Customer.vip_since.is_(None)),
                    and_(~vip, Customer.vip_since.is_not(None)),
                ),
            )
        )
    ).all()
    if changed:
        await session.execute(
            update(Customer)
            .where(Customer.id.in_([row[0] for row in changed]))
            .values(
                stage=new_stage,
                stage_since=case(
                    (Customer.stage.is_distinct_from(new_stage), as_of),
                    else_=Customer.stage_since,
                ),
                vip_since=case(
                    (vip, func.coalesce(Customer.vip_since, as_of)),
                    else_=None,
                ),
            )
            .execution_options(synchronize_session=False)
        )
    return RefreshedPage(
        len(ids),
        [
            StageChange(
                customer_id=cid,
                previous=previous,
                stage=stage,
                vip=bool(is_vip),
                became_vip=bool(is_vip) and vip_since is None,
            )
            for cid, previous, stage, is_vip, vip_since in changed
        ],
        ids[-1] if len(ids) == limit else None,
    )


def set_stage(customer: Customer, *, stage: str, vip: bool, at: datetime) -> StageChange | None:
    """Store one customer's freshly computed stage (the order path); the change, if any."""
    previous, was_vip = customer.stage, customer.vip_since is not None
    if previous == stage and was_vip == vip:
        return None
    if previous != stage:
        customer.stage, customer.stage_since = stage, at
    customer.vip_since = (customer.vip_since or at) if vip else None
    return StageChange(
        customer_id=customer.id,
        previous=previous,
        stage=stage,
        vip=vip,
        became_vip=vip and not was_vip,
    )


def stage_label(customer: Customer) -> str | None:
    """The stored stage as the ``LifecycleStage`` search attribute reads (None: unknown)."""
    if customer.stage is None:
        return None
    return label(
        customer.stage, vip=customer.vip_since is not None, repeat_buyer=customer.order_count >= 2
    )


@dataclass(frozen=True)
class LifecycleView:
    """A customer's stage as ``explain`` shows it: stage, since when, VIP, and the touch
    budget of the stage against the emails sent since it began."""

    label: str
    since: datetime | None
    vip_since: datetime | None
    budget: TouchBudget | None
    care_sent: int
    marketing_sent: int

    def lines(self) -> list[str]:
        since = f" since {self.since:%Y-%m-%d}" if self.since else ""
        vip = f" (VIP since {self.vip_since:%Y-%m-%d})" if self.vip_since else ""
        out = [f"lifecycle stage: {self.label}{since}{vip}"]
        if self.budget is not None:
            out.append(
                f"touch budget in this stage: care {self.care_sent} of {self.budget.care}, "
                f"marketing {self.marketing_sent} of {self.budget.marketing} sent"
            )
        return out


async def view(
    session: AsyncSession, customer: Customer, config: LifecycleConfig
) -> LifecycleView | None:
    """The stored stage of ``customer`` with its budget (None: no stage computed yet)."""
    shown = stage_label(customer)
    if shown is None or customer.stage is None:
        return None
    since = customer.stage_since
    rows = await session.execute(
        select(SendLog.journey, func.count())
        .where(
            SendLog.customer_id == customer.id,
            SendLog.status == "sent",
            *([SendLog.decided_at >= since] if since is not None else []),
        )
        .group_by(SendLog.journey)
    )
    care = marketing = 0
    for journey, count in rows:
        if journey in config.care_journeys:
            care += count
        else:
            marketing += count
    return LifecycleView(
        label=shown,
        since=since,
        vip_since=customer.vip_since,
        budget=config.budget.get(customer.stage),  # type: ignore[call-overload]
        care_sent=care,
        marketing_sent=marketing,
    )


async def touches_in_stage(
    session: AsyncSession,
    *,
    customer_id: str,
    since: datetime,
    care_journeys: tuple[str, ...],
    care: bool,
    other_than_key: str,
) -> int:
    """The touch budget's count: the customer's emails going out or gone since ``since``
    (the stage began) of care journeys (``care``) or of the others, this send's own row
    left out. One count over ``ix_send_log_customer_decided``."""
    journey = SendLog.journey.in_(care_journeys)
    return int(
        await session.scalar(
            select(func.count(SendLog.id)).where(
                SendLog.customer_id == customer_id,
                SendLog.channel == "email",
                SendLog.status.in_(GOING_OUT),
                SendLog.decided_at >= since,
                SendLog.idempotency_key != other_than_key,
                journey if care else ~journey,
            )
        )
        or 0
    )


async def cap_frees_at(
    session: AsyncSession,
    *,
    customer_id: str,
    since: datetime,
    other_than_run_chain: str,
    max_emails: int,
) -> datetime | None:
    """Cadence: of the emails the frequency cap counts (other runs', going out or gone,
    since ``since``), the ``max_emails``-th most recent one's time: once it leaves the
    window the cap allows a send. None: fewer than that."""
    return await session.scalar(
        select(SendLog.decided_at)
        .where(
            SendLog.customer_id == customer_id,
            SendLog.status.in_(GOING_OUT),
            SendLog.decided_at >= since,
            SendLog.run_chain_id != other_than_run_chain,
        )
        .order_by(SendLog.decided_at.desc())
        .offset(max_emails - 1)
        .limit(1)
    )


async def reachable_page(
    session: AsyncSession,
    *,
    after_id: str,
    limit: int,
    vip_only: bool = False,
    stages: tuple[str, ...] | None = None,
) -> tuple[list[tuple[str, str, str | None]], str | None]:
    """A keyset page of customers marketing email may reach (subscribed, not suppressed):
    VIPs only, or those in ``stages``; as (id, time zone, stage), and the last id looked at
    (None after the last page)."""
    conditions = [*reachable(), Customer.id > after_id]
    if vip_only:
        conditions.append(Customer.vip_since.is_not(None))
    if stages is not None:
        conditions.append(Customer.stage.in_(stages))
    rows = (
        await session.execute(
            select(Customer.id, Customer.timezone, Customer.stage)
            .where(*conditions)
            .order_by(Customer.id)
            .limit(limit)
        )
    ).all()
    found = [(cid, tz, stage) for cid, tz, stage in rows]
    return found, (found[-1][0] if len(found) == limit else None)
