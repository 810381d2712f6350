"""A/B tests of a step: which variant a send gets, and the winner once a test is decided.

A customer's variant is a pure function of (customer, journey, step) and the weights
(core.rules.ab_variant), so a retry, a replay or a rerun gives the same one; a send already
claimed keeps the variant its claim recorded. A step with ``auto_winner`` stops testing once
every variant has enough sends and the chi-squared test of its metric (core.stats) is below
``alpha``: the winner is written once to ``ab_winners`` (the decision, with its figures and
p-value) and every later send of the step gets it. Until then the test is looked at on each
send of the step: one GROUP BY over the step's sends (store.reports.variant_engagement).

The caller owns the transaction.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.contracts import SendStepInput
from core.rules import ab_variant
from core.stats import best_variant, chi_squared
from store import reports
from store.db import insert_for
from store.models import AbWinner, SendLog, utcnow

log = logging.getLogger(__name__)


async def choose(s: AsyncSession, req: SendStepInput, *, claimed: SendLog | None) -> SendStepInput:
    """``req`` with its variant's name, subject and template; ``req`` itself when the step
    has no variants."""
    if not req.variants:
        return req
    name = claimed.variant if claimed is not None else None
    if name is None:
        name = await winner(s, req)
    if name is None:
        name = ab_variant(req.customer_id, req.journey, req.step, req.variants)
    variant = next((v for v in req.variants if v.name == name), None)
    if variant is None:  # a winner or claim of a variant this run's config does not have
        name = ab_variant(req.customer_id, req.journey, req.step, req.variants)
        variant = next(v for v in req.variants if v.name == name)
    return req.model_copy(
        update={
            "variant": variant.name,
            "subject": variant.subject,
            "template": variant.template or req.template,
        }
    )


async def winner(s: AsyncSession, req: SendStepInput) -> str | None:
    """The step's winner: the one recorded, or the one this look at the test decides (then
    recorded); None while the test runs (or the step has no auto_winner)."""
    rule = req.auto_winner
    if rule is None:
        return None
    found = await s.get(AbWinner, (req.journey, req.step))
    if found is not None:
        return found.variant
    seen = await reports.variant_engagement(s, journey=req.journey, step=req.step)
    per_variant = {v.name: seen.get((req.step, v.name), reports.Engagement()) for v in req.variants}
    if min(e.sends for e in per_variant.values()) < rule.min_sends_per_variant:
        return None
    hits = {
        name: (e.opens if rule.metric == "opens" else e.clicks, e.sends)
        for name, e in per_variant.items()
    }
    p_value = chi_squared(list(hits.values()))
    best = best_variant(hits)
    if best is None or p_value >= rule.alpha:
        return None
    await s.execute(
        insert_for(s)(AbWinner)
        .values(
            journey=req.journey,
            step=req.step,
            variant=best,
            metric=rule.metric,
            p_value=p_value,
            figures={name: {"sends": n, "hits": h} for name, (h, n) in hits.items()},
            decided_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[AbWinner.journey, AbWinner.step])
    )
    decided = await s.scalar(
        select(AbWinner.variant).where(AbWinner.journey == req.journey, AbWinner.step == req.step)
    )
    log.info(
        "A/B test %s/%s decided: %s wins on %s (p = %.4g; %s)",
        req.journey,
        req.step,
        decided,
        rule.metric,
        p_value,
        hits,
    )
    return decided


async def winners(s: AsyncSession, *, journey: str) -> dict[str, AbWinner]:
    """The decided tests of a journey, by step."""
    rows = await s.scalars(select(AbWinner).where(AbWinner.journey == journey))
    return {row.step: row for row in rows}
