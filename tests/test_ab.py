"""A/B tests of a step: cart recovery's first reminder with two subjects, 50/50 over 400
customers. The split is within sampling error, a customer gets the same variant on a rerun,
the send log records it, and the report's per-variant sends, opens, clicks, conversions and
revenue equal what the customers received and did. With ``auto_winner``, once the test is
decided every later send gets the winner, and the decision is recorded."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from scipy.stats import chi2_contingency
from sqlalchemy import select

from core.contracts import SendStepInput
from core.rules import ab_variant
from core.stats import chi_squared
from journeys.config import AutoWinner, Variant
from starter.report_page import journey_page
from starter.reports import journey_report
from store import ab_tests, reports
from store.db import SessionFactory
from store.models import AbWinner, Customer, Event, Order, SendLog
from testkit.data import TEE, abandon_cart, add_customer
from testkit.engagement import PERSON, read_later
from testkit.mail import journey_mails, parts, tracked_links
from testkit.stack import Stack
from testkit.waiting import eventually
from tests.test_step_holdout import decisions_of, delivered, steps_with

ON_SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
JOURNEY, STEP = "cart_recovery", "reminder_1"
SUBJECTS = {
    "plain": "You left something in your cart",
    "ask": "Forgot something, {{ first_name }}?",
}
SEEN = {"plain": "You left something in your cart", "ask": "Forgot something, Ada?"}
VARIANTS = [{"name": name, "subject": subject} for name, subject in SUBJECTS.items()]


def test_chi_squared_agrees_with_scipy() -> None:
    tables = [[(30, 200), (45, 200)], [(5, 40), (9, 38), (20, 41)], [(0, 10), (3, 10)]]
    for table in tables:
        rows = [[hits, n - hits] for hits, n in table]
        expected = chi2_contingency(rows, correction=False).pvalue
        assert chi_squared(table) == pytest.approx(expected, rel=1e-9)
    assert chi_squared([(0, 10), (0, 12)]) == 1.0  # nothing to compare
    assert chi_squared([(3, 10)]) == 1.0


def test_assignment_follows_the_weights_and_is_a_function_of_customer_and_step() -> None:
    variants = [Variant(name="a", subject="A", weight=3), Variant(name="b", subject="B")]
    got = [ab_variant(f"c{i}", "j", "s", variants) for i in range(8000)]
    assert abs(got.count("a") / 8000 - 0.75) < 4 * math.sqrt(0.75 * 0.25 / 8000)
    assert got == [ab_variant(f"c{i}", "j", "s", variants) for i in range(8000)]
    other_step = [ab_variant(f"c{i}", "j", "t", variants) for i in range(8000)]
    assert other_step != got  # each step splits on its own


async def _abandon(stack: Stack, ids: list[str]) -> list[Any]:
    handles = []
    for cid in ids:
        await add_customer(stack, cid)
        handles.append(await abandon_cart(stack, cid, TEE))
    for chunk in range(0, len(handles), 25):  # past the first reminder (1 h)
        part = handles[chunk : chunk + 25]
        await asyncio.gather(*(stack.fast_forward(h, timedelta(hours=2)) for h in part))
    return handles


def _received(stack: Stack, cid: str) -> list[str]:
    """The variant of each first reminder the customer received, by its subject."""
    by_subject = {subject: name for name, subject in SEEN.items()}
    return [
        by_subject[mail["Subject"]]
        for mail in journey_mails(stack.catcher, cid, JOURNEY)
        if mail["X-Journey"] == f"{JOURNEY}/{STEP}"
    ]


@ON_SQLITE
async def test_a_50_50_subject_test_splits_is_stable_and_reports_per_variant(
    make_stack: Any, http: Any
) -> None:
    steps = steps_with(JOURNEY, **{STEP: {"variants": VARIANTS}})
    stack: Stack = await make_stack(cart_recovery={"steps": steps})
    ids = [stack.new_customer_id() for _ in range(400)]
    await _abandon(stack, ids)
    rows = await decisions_of(stack, ids, STEP)

    got = {cid: _received(stack, cid) for cid in ids}
    assert all(len(v) == 1 for v in got.values())
    variant = {cid: v[0] for cid, v in got.items()}
    plain = sum(1 for v in variant.values() if v == "plain")
    assert abs(plain - 200) <= 3 * math.sqrt(400 * 0.25)  # within 3 standard errors
    assert all(rows[cid].variant == variant[cid] for cid in ids)  # recorded with the send
    assert all(
        variant[cid] == ab_variant(cid, JOURNEY, STEP, [Variant(**v) for v in VARIANTS])
        for cid in ids
    )

    # What the customers did: every 4th opened, every 8th clicked too, every 5th bought.
    openers, clickers, buyers = set(ids[::4]), set(ids[::8]), set(ids[::5])
    await delivered(stack, ids)
    for cid in sorted(openers):
        await read_later(stack, cid)  # a person reading it, not a fetch at delivery
        (mail,) = journey_mails(stack.catcher, cid, JOURNEY)
        html = parts(mail)[1]
        (pixel,) = tracked_links(html, "o")
        assert (await http.get(pixel, headers=PERSON)).status_code == 200
        if cid in clickers:
            click = tracked_links(html, "c")[0]
            assert (await http.get(click, headers=PERSON)).status_code == 302
    async with stack.sessions.begin() as s:
        for cid in buyers:
            at = rows[cid].decided_at + timedelta(hours=6)
            s.add(
                Order(
                    id=f"o-{cid}",
                    customer_id=cid,
                    total=Decimal("12.50"),
                    currency="EUR",
                    placed_at=at,
                )
            )

    since = min(row.decided_at for row in rows.values())
    report = await journey_report(stack.sessions, JOURNEY, windows=["2d"], since=since)
    step = next(s for s in report["steps"] if s["step"] == STEP)
    shown = {v["variant"]: v for v in step["variants"]}
    assert set(shown) == set(SUBJECTS)
    for name, v in shown.items():
        mine = {cid for cid in ids if variant[cid] == name}
        assert v["sends"] == len(mine), name
        assert v["opens"] == len(mine & openers), name
        assert v["clicks"] == len(mine & clickers), name
        (w,) = v["windows"]
        assert (w["customers"], w["converted"]) == (len(mine), len(mine & buyers)), name
        assert w["revenue"] == 12.5 * len(mine & buyers), name
    expected_p = chi_squared([(v["opens"], v["sends"]) for v in shown.values()])
    assert step["ab"]["opens_p_value"] == pytest.approx(expected_p)
    assert step["ab"]["winner"] is None
    page = journey_page(report)  # the page shows the test: a row per variant, the p-values
    assert "<h3>A/B test</h3>" in page and f"p = {expected_p:.3f}" in page
    assert all(f"<td>{name}</td><td>{v['sends']}</td>" in page for name, v in shown.items())

    # A rerun: the cart emptied (the run ends), a new cart of the same customers: each gets
    # the same variant again.
    again = [cid for cid in ids if cid not in buyers][:30]
    handles = []
    for cid in again:
        await stack.journeys.cart_updated({"customer_id": cid, "lines": []})
    for cid in again:
        handles.append(await abandon_cart(stack, cid, TEE, message_id=f"again-{cid}"))
    await asyncio.gather(*(stack.fast_forward(h, timedelta(hours=2)) for h in handles))
    for cid in again:

        async def received(cid: str = cid) -> list[str]:
            return _received(stack, cid)

        assert await eventually(received, lambda got: len(got) == 2) == [variant[cid]] * 2


@ON_SQLITE
async def test_auto_winner_sends_the_winner_to_everyone_after(make_stack: Any, http: Any) -> None:
    rule = {"min_sends_per_variant": 8, "alpha": 0.05, "metric": "opens"}
    # variants of their own: the store is shared with the other test's sends of this step
    variants = [{"name": f"{v['name']}-2", "subject": v["subject"]} for v in VARIANTS]
    steps = steps_with(JOURNEY, **{STEP: {"variants": variants, "auto_winner": rule}})
    stack: Stack = await make_stack(cart_recovery={"steps": steps})
    ids = [stack.new_customer_id() for _ in range(40)]
    await _abandon(stack, ids)
    rows = await decisions_of(stack, ids, STEP)
    # everyone who got "ask" opens it; nobody opens "plain"
    await delivered(stack, ids)
    for cid in ids:
        if rows[cid].variant == "ask-2":
            await read_later(stack, cid)
            (mail,) = journey_mails(stack.catcher, cid, JOURNEY)
            (pixel,) = tracked_links(parts(mail)[1], "o")
            assert (await http.get(pixel, headers=PERSON)).status_code == 200

    later = [stack.new_customer_id() for _ in range(20)]
    await _abandon(stack, later)
    after = await decisions_of(stack, later, STEP)

    assert {row.variant for row in after.values()} == {"ask-2"}
    by_hash = [ab_variant(cid, JOURNEY, STEP, [Variant(**v) for v in variants]) for cid in later]
    assert "plain-2" in by_hash  # some would have had "plain" without the winner
    async with stack.sessions() as s:
        won = await s.scalar(
            select(AbWinner).where(AbWinner.journey == JOURNEY, AbWinner.step == STEP)
        )
    assert won is not None and (won.variant, won.metric) == ("ask-2", "opens")
    assert won.p_value < 0.05
    assert won.figures["ask-2"]["hits"] == won.figures["ask-2"]["sends"] >= 8
    assert won.figures["plain-2"]["hits"] == 0
    report = await journey_report(stack.sessions, JOURNEY, windows=["2d"])
    step = next(s for s in report["steps"] if s["step"] == STEP)
    assert step["ab"]["winner"]["variant"] == "ask-2"


T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def test_variant_figures_and_the_winner_on_both_databases(sessions: SessionFactory) -> None:
    """Known rows: 6 sends of "a" (3 opened by people, 1 only by a scanner, 1 clicked) and 4
    of "b" (none opened); orders of 2 "a" customers within 2 days, 1 "b" customer after."""
    tag = datetime.now(UTC).strftime("%H%M%S%f")
    journey = f"ab{tag}"
    variants = (Variant(name="a", subject="A"), Variant(name="b", subject="B"))
    async with sessions.begin() as s:
        for n in range(10):
            cid, name = f"v{n}-{tag}", "a" if n < 6 else "b"
            key = f"{journey}:{cid}:run:hello"
            s.add(Customer(id=cid, email=f"{cid}@shop.test"))
            await s.flush()
            s.add(
                SendLog(
                    idempotency_key=key,
                    customer_id=cid,
                    journey=journey,
                    workflow_id=f"{journey}:{cid}",
                    run_chain_id="run",
                    step="hello",
                    template="hello",
                    status="sent",
                    variant=name,
                    decided_at=T0,
                )
            )
            seen = {0: "human", 1: "human", 2: "human", 3: "machine"}.get(n)
            if seen:
                s.add(_engaged(cid, key, "Email Opened", seen))
            if n == 0:
                s.add(_engaged(cid, key, "Email Link Clicked", "human"))
            if n in (1, 2, 7):
                after = timedelta(days=1 if n < 6 else 3)
                s.add(
                    Order(
                        id=f"o{n}-{tag}",
                        customer_id=cid,
                        total=Decimal("20.00"),
                        currency="EUR",
                        placed_at=T0 + after,
                    )
                )

    async with sessions() as s:
        engaged = await reports.variant_engagement(s, journey=journey)
        counts = await reports.variant_counts(
            s, journey=journey, window=timedelta(days=2), as_of=T0 + timedelta(days=10)
        )
    assert engaged == {
        ("hello", "a"): reports.Engagement(sends=6, opens=3, clicks=1),
        ("hello", "b"): reports.Engagement(sends=4, opens=0, clicks=0),
    }
    assert (counts[("hello", "a")].converted, counts[("hello", "a")].revenue) == (
        2,
        Decimal("40.00"),
    )
    assert counts[("hello", "b")].customers == 4 and counts[("hello", "b")].converted == 0

    def request(cid: str, min_sends: int) -> SendStepInput:
        return SendStepInput(
            journey=journey,
            workflow_id=f"{journey}:{cid}",
            run_chain_id="run",
            step="hello",
            template="hello",
            subject="?",
            customer_id=cid,
            entered_at=T0,
            now=T0,
            variants=variants,
            auto_winner=AutoWinner(min_sends_per_variant=min_sends, alpha=0.2),
        )

    async with sessions.begin() as s:  # "b" has 4 sends: not enough for 5 per variant
        undecided = await ab_tests.choose(s, request(f"new-{tag}", 5), claimed=None)
    assert undecided.variant == ab_variant(f"new-{tag}", journey, "hello", variants)
    async with sessions.begin() as s:  # 3/6 against 0/4: p = 0.09 < 0.2
        decided = await ab_tests.choose(s, request(f"new-{tag}", 4), claimed=None)
    assert (decided.variant, decided.subject) == ("a", "A")
    async with sessions() as s:
        won = await ab_tests.winners(s, journey=journey)
    assert won["hello"].variant == "a"
    assert won["hello"].p_value == pytest.approx(chi_squared([(3, 6), (0, 4)]))
    assert won["hello"].figures == {"a": {"sends": 6, "hits": 3}, "b": {"sends": 4, "hits": 0}}


def _engaged(cid: str, key: str, name: str, kind: str) -> Event:
    return Event(
        message_id=f"{name}:{key}",
        customer_id=cid,
        name=name,
        properties={"send_key": key},
        occurred_at=T0 + timedelta(hours=2),
        engagement_class=kind,
    )
