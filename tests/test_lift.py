"""The lift arithmetic (core.stats) against hand-computed cases and Newcombe's published
intervals, checked with statsmodels and scipy here only; and the report's SQL counts
(store.reports) on both databases against rows whose answer is known."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from scipy.stats import chi2_contingency
from statsmodels.stats.proportion import confint_proportions_2indep

from core.stats import MIN_CUSTOMERS, Group, lift, newcombe_interval, verdict, z_test
from starter.reports import all_journeys, figures, journey_report, parse_windows, window_of
from store import reports
from store.db import SessionFactory
from store.models import Order, SendLog
from testkit.data import entered

# Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10.
PUBLISHED = [
    ((56, 70), (48, 80), (0.0524, 0.3339)),
    ((9, 10), (3, 10), (0.1705, 0.8090)),
    ((5, 56), (0, 29), (-0.0381, 0.1926)),
    ((0, 10), (0, 20), (-0.1611, 0.2775)),
    ((0, 10), (0, 10), (-0.2775, 0.2775)),
    ((10, 10), (0, 20), (0.6791, 1.0000)),
]


@pytest.mark.parametrize(("treated", "control", "interval"), PUBLISHED)
def test_newcombe_interval_matches_the_published_values(treated, control, interval):
    got = newcombe_interval(Group(treated[1], treated[0]), Group(control[1], control[0]))

    assert got == pytest.approx(interval, abs=5e-5)


CASES = [
    # (treated converted/customers, control converted/customers): 0 conversions, all
    # conversions, a control of 1, unequal groups, equal rates
    ((0, 40), (0, 40)),
    ((40, 40), (40, 40)),
    ((0, 40), (3, 40)),
    ((40, 40), (30, 40)),
    ((50, 100), (1, 1)),
    ((50, 100), (0, 1)),
    ((30, 300), (2, 45)),
    ((12, 200), (12, 200)),
]


@pytest.mark.parametrize(("treated", "control"), CASES)
def test_lift_agrees_with_statsmodels_and_scipy(treated, control):
    t, c = Group(treated[1], treated[0]), Group(control[1], control[0])

    found = lift(t, c)

    assert found is not None
    assert found.absolute == pytest.approx(treated[0] / treated[1] - control[0] / control[1])
    low, high = confint_proportions_2indep(
        treated[0], treated[1], control[0], control[1], method="newcomb", compare="diff"
    )
    assert found.ci95 == pytest.approx((low, high), abs=1e-9)
    assert found.ci95[0] <= found.absolute <= found.ci95[1]
    table = [[treated[0], treated[1] - treated[0]], [control[0], control[1] - control[0]]]
    if 0 < treated[0] + control[0] < treated[1] + control[1]:
        # the pooled z-test is the 2x2 chi-squared test without continuity correction
        p = chi2_contingency(table, correction=False).pvalue
        assert found.p_value == pytest.approx(p, rel=1e-9)
    else:
        assert found.p_value == 1.0  # both all or both none: nothing to find


def test_hand_computed_lift_revenue_and_incremental_orders():
    # 20 of 100 treated bought (25 orders, 1000.00); 10 of 100 held out (12 orders, 400.00)
    t = Group(100, 20, orders=25, revenue=Decimal("1000.00"))
    c = Group(100, 10, orders=12, revenue=Decimal("400.00"))

    found = lift(t, c)

    assert found is not None
    assert found.absolute == pytest.approx(0.10)
    assert found.relative == pytest.approx(1.0)
    assert found.incremental_orders == pytest.approx(13.0)  # (0.25 - 0.12) * 100
    assert found.incremental_revenue == Decimal("600.00")  # (10.00 - 4.00) * 100
    pooled = 30 / 200
    z = 0.10 / math.sqrt(pooled * (1 - pooled) * (2 / 100))
    assert found.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert z_test(t, c) == found.p_value
    assert verdict(t, c, found).startswith("significant at 95 %")


def test_verdicts_in_plain_words():
    small = Group(MIN_CUSTOMERS - 1, 20)
    assert verdict(small, Group(100, 1), lift(small, Group(100, 1))) == (
        "not enough customers yet to tell"
    )
    same = Group(500, 50)
    assert verdict(same, same, lift(same, same)) == "no difference shown at 95 %"
    assert lift(Group(10, 3), Group(0, 0)) is None
    assert "no comparison" in verdict(Group(10, 3), Group(0, 0), None)
    shown = figures("10d", reports.Counts(customers=10, converted=3), None)
    assert shown["lift"] is None and shown["treated"]["rate"] == pytest.approx(0.3)


def test_windows_are_days_or_hours_and_a_bad_one_names_itself():
    assert parse_windows("2d, 10d,30d") == ["2d", "10d", "30d"]
    assert window_of("12h") == timedelta(hours=12)
    with pytest.raises(ValueError, match="'10x'"):
        parse_windows("2d,10x")


T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def _entry(s, cid: str, group: str, at: datetime, journey: str = "welcome_series") -> None:
    await entered(s, cid, journey=journey, group=group, at=at)


async def test_report_counts_orders_in_each_window_after_entry(sessions: SessionFactory):
    tag = datetime.now(UTC).strftime("%H%M%S%f")
    journey = f"j{tag}"
    async with sessions.begin() as s:
        for n in range(4):
            await _entry(s, f"t{n}-{tag}", "treated", T0, journey)
            await _entry(s, f"c{n}-{tag}", "control", T0, journey)
        # treated: t0 buys after 1 day (2 orders), t1 after 5 days, t2 before entering
        # control: c0 buys after 20 days; c1 after 31 days (outside every window)
        orders = [
            (f"t0-{tag}", timedelta(days=1), "10.00"),
            (f"t0-{tag}", timedelta(days=1, hours=2), "5.50"),
            (f"t1-{tag}", timedelta(days=5), "20.00"),
            (f"t2-{tag}", timedelta(hours=-1), "99.00"),
            (f"c0-{tag}", timedelta(days=20), "30.00"),
            (f"c1-{tag}", timedelta(days=31), "40.00"),
        ]
        for i, (cid, after, total) in enumerate(orders):
            s.add(
                Order(
                    id=f"o{i}-{tag}",
                    customer_id=cid,
                    total=Decimal(total),
                    currency="EUR",
                    placed_at=T0 + after,
                )
            )
        # a second entry of t0 later does not count them twice
        await reports.record_entry(
            s,
            customer_id=f"t0-{tag}",
            journey=journey,
            workflow_id=f"{journey}:t0-{tag}",
            run_chain_id="run-2",
            entered_at=T0 + timedelta(days=3),
            group="treated",
            holdout_share=0.5,
            journey_version=1,
        )
        # a would-be send of a held-out customer at a step
        s.add(
            SendLog(
                idempotency_key=f"k-{tag}",
                customer_id=f"c0-{tag}",
                journey=journey,
                workflow_id=f"{journey}:c0-{tag}",
                run_chain_id="run-1",
                step="gift",
                template="gift",
                status="held_out",
                decided_at=T0 + timedelta(days=15),
            )
        )

    report = await journey_report(
        sessions, journey, windows=["2d", "10d", "30d"], as_of=T0 + timedelta(days=12)
    )

    got = {
        w["window"]: (
            w["treated"]["converted"],
            w["treated"]["revenue"],
            w["control"]["converted"],
            w["control"]["revenue"],
        )
        for w in report["windows"]
    }
    assert got == {
        "2d": (1, 15.5, 0, 0.0),
        "10d": (2, 35.5, 0, 0.0),
        "30d": (2, 35.5, 1, 30.0),
    }
    ten = report["windows"][1]
    assert ten["treated"]["customers"] == ten["control"]["customers"] == 4
    assert ten["treated"]["orders"] == 3
    assert ten["lift"]["absolute"] == pytest.approx(0.5)
    assert ten["still_open"] == 0 and report["windows"][2]["still_open"] == 8
    (gift,) = report["steps"]
    assert gift["step"] == "gift"
    assert [w["control"]["converted"] for w in gift["windows"]] == [0, 1, 1]
    assert gift["windows"][0]["treated"]["customers"] == 0


async def test_the_overview_has_each_journeys_windows_as_its_own_report(sessions: SessionFactory):
    """``all_journeys`` (the /reports overview: no steps) reads every window in one statement
    per journey, as the journey's own report does; the figures are the same."""
    tag = datetime.now(UTC).strftime("%H%M%S%f")
    journey = f"o{tag}"
    async with sessions.begin() as s:
        for n in range(3):
            await _entry(s, f"ot{n}-{tag}", "treated", T0, journey)
            await _entry(s, f"oc{n}-{tag}", "control", T0, journey)
        for i, (cid, after) in enumerate(
            [(f"ot0-{tag}", timedelta(days=1)), (f"ot1-{tag}", timedelta(days=9))]
        ):
            s.add(
                Order(
                    id=f"oo{i}-{tag}",
                    customer_id=cid,
                    total=Decimal("12.50"),
                    currency="EUR",
                    placed_at=T0 + after,
                )
            )
    as_of = T0 + timedelta(days=40)
    windows = ["2d", "10d", "30d"]
    one = await journey_report(sessions, journey, windows=windows, as_of=as_of)
    overview = await all_journeys(sessions, windows=windows, since=T0, as_of=as_of)
    (mine,) = [r for r in overview if r["journey"] == journey]
    assert mine["windows"] == one["windows"]
    assert mine["steps"] == [] and "mail" not in mine
    assert [w["treated"]["converted"] for w in mine["windows"]] == [1, 2, 2]
    assert [w["control"]["customers"] for w in mine["windows"]] == [3, 3, 3]
