"""Activities that read and write journey state in the store (not email)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from core.contracts import (
    DecisionInput,
    EntryInput,
    FactsInput,
    JourneyFacts,
    SunsetInput,
    TagInput,
)
from core.rules import counts_as_order, skus_of
from store import coupons, decisions, events, orders, repo, reports
from store.db import SessionFactory
from store.models import utcnow


async def ordered_since(
    s: AsyncSession,
    *,
    customer_id: str,
    since: datetime,
    ignore_order_id: str | None,
    skus: list[str] | None,
) -> bool:
    """Has the customer placed an order that counts (core.rules.counts_as_order) since?"""
    placed = await orders.orders_since(s, customer_id=customer_id, since=since)
    return any(
        counts_as_order(o.id, skus_of(o.lines), ignore_order_id=ignore_order_id, skus=skus)
        for o in placed
    )


class JourneyActivities:
    def __init__(self, *, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name="journey_facts")
    async def journey_facts(self, req: FactsInput) -> JourneyFacts:
        async with self._sessions() as s:
            customer = await repo.get_customer(s, customer_id=req.customer_id)
            seen = await events.engagement_of_run(
                s, customer_id=req.customer_id, send_key_prefix=req.send_key_prefix
            )
            viewed_again = False
            if req.view_sku is not None and req.views_after_send is not None:
                # Views are stamped by the wall clock, so compare with when that email
                # really went out, not with the journey's (possibly virtual) clock.
                sent = await repo.get_send(s, key=req.views_after_send)
                after = sent.sent_at or sent.claimed_at if sent is not None else None
                views = await events.count_views(
                    s, customer_id=req.customer_id, sku=req.view_sku, since=after
                )
                viewed_again = views > 0
            return JourneyFacts(
                ordered=await ordered_since(
                    s,
                    customer_id=req.customer_id,
                    since=req.since,
                    ignore_order_id=req.ignore_order_id,
                    skus=req.order_skus,
                ),
                opened="Email Opened" in seen or "Email Link Clicked" in seen,
                clicked="Email Link Clicked" in seen,
                orders_total=await orders.count_orders(s, customer_id=req.customer_id),
                has_birthday=bool(customer and customer.attributes.get("birthday")),
                viewed_again=viewed_again,
                used_coupon=await coupons.redeemed_from_run(
                    s, customer_id=req.customer_id, send_key_prefix=req.send_key_prefix
                ),
            )

    @activity.defn(name="record_decision")
    async def record_decision(self, req: DecisionInput) -> None:
        async with self._sessions.begin() as s:
            await decisions.record_decision(
                s,
                customer_id=req.customer_id,
                journey=req.journey,
                workflow_id=req.workflow_id,
                run_chain_id=req.run_chain_id,
                name=req.name,
                value=req.value,
                reason=req.reason,
                decided_at=req.at,
            )

    @activity.defn(name="sunset_customer")
    async def sunset_customer(self, req: SunsetInput) -> None:
        """No more marketing email to this address (list cleanup); recorded with the reason
        and the date. A later order or a re-subscribe lifts it."""
        async with self._sessions.begin() as s:
            customer = await repo.get_customer(s, customer_id=req.customer_id)
            if customer is not None:
                await repo.suppress(
                    s,
                    email=customer.email,
                    customer_id=customer.id,
                    reason="sunset",
                    detail=f"{req.reason} (on {utcnow():%Y-%m-%d})",
                    source="list cleanup",
                )

    @activity.defn(name="tag_customer")
    async def tag_customer(self, req: TagInput) -> None:
        # The row is locked while its attributes are rewritten, so an opt-out written into
        # them at the same moment (by ingestion) is not overwritten with the older copy.
        async with self._sessions.begin() as s:
            customer = await repo.lock_customer(s, customer_id=req.customer_id)
            if customer is not None:
                tags = set(customer.attributes.get("tags", []))
                customer.attributes = {**customer.attributes, "tags": sorted(tags | {req.tag})}

    @activity.defn(name="record_entry")
    async def record_entry(self, req: EntryInput) -> None:
        """The run entered its journey (once per run: a retry finds it recorded)."""
        async with self._sessions.begin() as s:
            await reports.record_entry(s, **req.model_dump())
