"""Lifecycle stages (core/lifecycle.py, journeys/lifecycle.toml): every boundary as a table,
the same table through the store's set-based SQL, and the stage kept per customer through
the public paths (orders over HTTP, the daily sweep, explain, the runs' search attribute)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from core.contracts import SweepInput, SweepResult
from core.ids import LIFECYCLE_STAGE
from core.lifecycle import CustomerFacts, LifecycleConfig, lifecycle_of, load_lifecycle, stage_of
from journeys.config import BirthdayConfig, JourneyConfigError, WinBackConfig
from settings import ROOT
from starter import ops
from store import lifecycle as stages
from store.migrate import upgrade
from store.models import Customer, Event, Order
from testkit.data import add_customer, email_for, lapsed_customer
from testkit.stack import WRITE_KEY
from testkit.waiting import PATIENCE, eventually_passes
from workflows.sweep import DailySweep

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
SHIPPED = load_lifecycle(ROOT / "journeys")
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)

# (label, orders, days since the last order, stage): each bound of journeys/lifecycle.toml
# from both sides. Bounds are exclusive: an order exactly 7 days ago is no longer "new".
BOUNDARIES = [
    ("first order just now", 1, timedelta(0), "new"),
    ("first order 7 d - 1 s", 1, 7 * DAY - SECOND, "new"),
    ("first order 7 d", 1, 7 * DAY, "active"),
    ("repeat order just now", 2, timedelta(0), "active"),
    ("45 d - 1 s", 1, 45 * DAY - SECOND, "active"),
    ("45 d", 1, 45 * DAY, "repurchase_window"),
    ("90 d - 1 s", 2, 90 * DAY - SECOND, "repurchase_window"),
    ("90 d", 2, 90 * DAY, "silent"),
    ("140 d - 1 s", 1, 140 * DAY - SECOND, "silent"),
    ("140 d", 1, 140 * DAY, "sleeping"),
    ("365 d - 1 s", 3, 365 * DAY - SECOND, "sleeping"),
    ("365 d", 3, 365 * DAY, "lost"),
    ("two years", 1, 730 * DAY, "lost"),
]


@pytest.mark.parametrize(
    ("label", "orders", "ago", "stage"), BOUNDARIES, ids=[b[0] for b in BOUNDARIES]
)
def test_every_stage_boundary(label: str, orders: int, ago: timedelta, stage: str) -> None:
    facts = CustomerFacts(signed_up_at=NOW - 800 * DAY, order_count=orders, last_order_at=NOW - ago)
    assert stage_of(facts, NOW, SHIPPED) == stage


@pytest.mark.parametrize(
    ("signed_up", "engaged", "stage"),
    [
        (timedelta(0), None, "prospect"),
        (365 * DAY - SECOND, None, "prospect"),
        (365 * DAY, None, "lost"),
        (800 * DAY, 10 * DAY, "prospect"),  # an open keeps a prospect a prospect
        (800 * DAY, 365 * DAY, "lost"),
    ],
)
def test_a_prospect_is_lost_after_a_year_without_an_order_or_an_open(
    signed_up: timedelta, engaged: timedelta | None, stage: str
) -> None:
    facts = CustomerFacts(
        signed_up_at=NOW - signed_up,
        last_engaged_at=NOW - engaged if engaged is not None else None,
    )
    assert stage_of(facts, NOW, SHIPPED) == stage


@pytest.mark.parametrize(
    ("orders", "spend", "vip"),
    [
        (4, Decimal("499.99"), False),
        (4, Decimal("500.00"), True),  # by spend
        (5, Decimal("10.00"), True),  # by order count
        (1, Decimal("0"), False),
    ],
)
def test_vip_by_spend_or_order_count(orders: int, spend: Decimal, vip: bool) -> None:
    facts = CustomerFacts(
        signed_up_at=NOW, order_count=orders, last_order_at=NOW - 50 * DAY, spend=spend
    )
    life = lifecycle_of(facts, NOW, SHIPPED)
    assert life.vip is vip
    assert life.repeat_buyer is (orders >= 2)
    assert life.label == (
        "repurchase_window, vip"
        if vip
        else "repurchase_window" + (", repeat buyer" if orders >= 2 else "")
    )


def test_a_shop_changes_every_threshold_without_code(tmp_path: Path) -> None:
    (tmp_path / "lifecycle.toml").write_text(
        '[stages]\nnew_until = "3d"\nactive_until = "30d"\nrepurchase_until = "60d"\n'
        'silent_until = "100d"\nsleeping_until = "200d"\n[vip]\nmin_spend = 100\n'
    )
    config = load_lifecycle(tmp_path)
    facts = CustomerFacts(signed_up_at=NOW, order_count=1, last_order_at=NOW - 3 * DAY)
    assert stage_of(facts, NOW, config) == "active"
    assert stage_of(facts, NOW, SHIPPED) == "new"
    assert lifecycle_of(
        CustomerFacts(signed_up_at=NOW, order_count=1, last_order_at=NOW, spend=Decimal(100)),
        NOW,
        config,
    ).vip


def test_a_bad_lifecycle_file_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "lifecycle.toml").write_text('[stages]\nnew_until = "60d"\n')
    with pytest.raises(JourneyConfigError, match=r"lifecycle.toml: stages: .*new_until < active"):
        load_lifecycle(tmp_path)


# -- the same table, set-based in the store ------------------------------------------------


@pytest.fixture
async def fresh_sqlite(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'lifecycle.db'}"
    await upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A SQLite database of its own for each test (the sweep looks at every customer in
    it), or the session's PostgreSQL one (the crafted ids are unique)."""
    fixture = "fresh_sqlite" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


async def test_the_sweeps_sql_agrees_with_the_table(sessions) -> None:
    """Every row of BOUNDARIES (and VIP, and prospects) as crafted customers; one page of
    the set-based update must give each the stage the pure function gives."""
    run = uuid.uuid4().hex[:6]
    expected: dict[str, tuple[str, bool]] = {}
    async with sessions.begin() as s:
        for n, (_, orders, ago, stage) in enumerate(BOUNDARIES):
            cid = f"lc-{run}-{n:02d}"
            s.add(_customer(cid, orders=orders, last_order_at=NOW - ago))
            expected[cid] = (stage, False)
        vip = f"lc-{run}-vip"
        s.add(_customer(vip, orders=1, last_order_at=NOW - 10 * DAY))
        await s.flush()
        s.add(
            Order(
                id=f"o-{vip}",
                customer_id=vip,
                total=Decimal("500.00"),
                currency="EUR",
                lines={"items": []},
                placed_at=NOW - 10 * DAY,
            )
        )
        expected[vip] = ("active", True)
        prospect, lost = f"lc-{run}-prospect", f"lc-{run}-zlost"
        s.add(_customer(prospect, created_at=NOW - 400 * DAY))
        s.add(_customer(lost, created_at=NOW - 400 * DAY))
        await s.flush()
        s.add(
            Event(
                message_id=f"open-{prospect}",
                customer_id=prospect,
                name="Email Opened",
                properties={},
                occurred_at=NOW - 30 * DAY,
            )
        )
        expected[prospect] = ("prospect", False)
        expected[lost] = ("lost", False)

    async with sessions.begin() as s:
        page = await stages.refresh_page(
            s, as_of=NOW, config=SHIPPED, after_id=f"lc-{run}-", limit=len(expected)
        )
    assert {c.customer_id for c in page.changes} >= set(expected)
    async with sessions() as s:
        rows = (
            await s.execute(
                select(Customer.id, Customer.stage, Customer.vip_since, Customer.stage_since).where(
                    Customer.id.in_(expected)
                )
            )
        ).all()
    got = {cid: (stage, vip_since is not None) for cid, stage, vip_since, _ in rows}
    assert got == expected
    assert all(since == NOW for *_, since in rows)

    async with sessions.begin() as s:  # the same day again: nothing changes
        again = await stages.refresh_page(
            s, as_of=NOW, config=SHIPPED, after_id=f"lc-{run}-", limit=len(expected)
        )
    assert [c for c in again.changes if c.customer_id in expected] == []


def _customer(
    cid: str,
    *,
    orders: int = 0,
    last_order_at: datetime | None = None,
    created_at: datetime = NOW - 800 * DAY,
) -> Customer:
    return Customer(
        id=cid,
        email=email_for(cid),
        timezone="UTC",
        order_count=orders,
        last_order_at=last_order_at,
        created_at=created_at,
        attributes={},
    )


# -- through the public paths ---------------------------------------------------------------

pytestmark_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytestmark_sqlite
async def test_an_order_makes_a_new_customer_shown_by_explain_and_on_the_run(stack, http):
    cid = stack.new_customer_id()
    auth = {"Authorization": f"Bearer {WRITE_KEY}"}
    answer = await http.post(
        "/v1/identify", headers=auth, json={"userId": cid, "traits": {"email": email_for(cid)}}
    )
    assert answer.status_code == 200
    x = await ops.explain(stack.sessions, stack.client, cid)
    assert x.lifecycle is None  # nothing computed before the first order or sweep

    answer = await http.post(
        "/v1/track",
        headers=auth,
        json={
            "userId": cid,
            "event": "Order Completed",
            "properties": {"order_id": f"{cid}-1", "total": 40, "currency": "EUR"},
        },
    )
    assert answer.status_code == 200

    x = await ops.explain(stack.sessions, stack.client, cid)
    assert x.lifecycle is not None
    assert x.lifecycle.label == "new"
    assert x.lifecycle.lines()[1].startswith("touch budget in this stage: care ")
    assert "of 7" in x.lifecycle.lines()[1]  # the "new" stage's care budget (lifecycle.toml)
    async with stack.sessions() as s:
        changed = list(
            await s.scalars(
                select(Event).where(
                    Event.customer_id == cid, Event.name == "Lifecycle Stage Changed"
                )
            )
        )
    assert [(e.properties["previous"], e.properties["stage"]) for e in changed] == [(None, "new")]

    async def on_the_nurture_run():  # visibility catches up with the run
        runs = [wf async for wf in stack.client.list_workflows(f'CustomerId = "{cid}"')]
        assert [wf.typed_search_attributes.get(LIFECYCLE_STAGE) for wf in runs] == ["new"]

    await eventually_passes(on_the_nurture_run)


@pytestmark_sqlite
async def test_the_daily_sweep_moves_stages_as_time_passes(stack):
    """A first order now ("new"), and a customer whose only order is 100 days old with no
    stage yet: ten days later the sweep finds them "active" and "silent"; the changes are in
    the event log and in explain."""
    recent, quiet = stack.new_customer_id(), stack.new_customer_id()
    now = datetime.now(UTC).replace(microsecond=0)
    await add_customer(stack, recent)
    await stack.journeys.order_placed(
        {"customer_id": recent, "order_id": f"{recent}-1", "total": "20"}
    )
    await lapsed_customer(stack, quiet, as_of=now, orders=[100])
    async with stack.sessions() as s:
        assert (await s.get(Customer, recent)).stage == "new"
        assert (await s.get(Customer, quiet)).stage is None

    later = now + timedelta(days=10)
    result = await _sweep(stack, later)
    assert result.counts["repeat_purchase"].pages >= 1  # the rest of the sweep ran after it

    async with stack.sessions() as s:
        got = {cid: (await s.get(Customer, cid)).stage for cid in (recent, quiet)}
        logged = list(
            await s.scalars(
                select(Event).where(
                    Event.customer_id == quiet, Event.name == "Lifecycle Stage Changed"
                )
            )
        )
    assert got == {recent: "active", quiet: "silent"}
    assert [(e.properties["stage"], e.occurred_at) for e in logged] == [("silent", later)]
    x = await ops.explain(stack.sessions, stack.client, quiet)
    assert x.lifecycle is not None and x.lifecycle.label == "silent"
    assert x.lifecycle.since == later


async def _sweep(stack, as_of: datetime) -> SweepResult:
    handle = await stack.client.start_workflow(
        DailySweep.run,
        SweepInput(
            win_back=stack.journeys.config("win_back", WinBackConfig),
            birthday=stack.journeys.config("birthday", BirthdayConfig),
            lifecycle=load_lifecycle(stack.settings.journeys_dir),
            as_of=as_of,
        ),
        id=f"sweep-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.temporal_task_queue,
    )
    return await asyncio.wait_for(handle.result(), timeout=PATIENCE)


def test_defaults_match_the_shipped_file() -> None:
    """The model's defaults are the shipped file's (explain falls back on them)."""
    assert LifecycleConfig() == SHIPPED


@pytestmark_sqlite
async def test_the_cli_explains_the_stage_with_the_shops_own_touch_budget(make_stack):
    """explain (python -m starter explain) prints the stage and the budget of the shop's
    lifecycle.toml, here changed to 9 care and 2 marketing emails for new customers."""
    from tests.test_cli_errors import cli, stack_env

    stack = await make_stack(lifecycle={"budget": {"new": {"care": 9, "marketing": 2}}})
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await stack.journeys.order_placed({"customer_id": cid, "order_id": f"{cid}-1", "total": "20"})
    ran = await cli(stack_env(stack), "explain", cid)

    assert ran.code == 0, ran
    assert "lifecycle stage: new since " in ran.out
    (budget,) = [line for line in ran.out.splitlines() if line.startswith("touch budget")]
    assert " of 9, marketing " in budget and budget.endswith(" of 2 sent")
