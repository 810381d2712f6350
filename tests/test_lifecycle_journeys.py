"""VIP care and holiday greetings: started by the daily sweep after the stages are brought up
to date (workflows/lifecycle_sweep.py), with deterministic ids: VIP care once a year, a
holiday greeting on the customer's own local date, once per holiday and year."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from core.calendar_days import holiday_on
from core.contracts import SweepInput, SweepResult
from core.lifecycle import load_lifecycle
from journeys.config import BirthdayConfig, HolidayConfig, ShopDate, VipCareConfig, WinBackConfig
from store import orders as order_rows
from store.migrate import upgrade
from testkit.data import TEE, add_customer, email_for
from testkit.mail import journey_mails, steps_of, wait_for_mail
from testkit.waiting import PATIENCE
from workflows.holidays import HolidayGreeting
from workflows.sweep import DailySweep
from workflows.vip_care import VipCare

CALENDAR = HolidayConfig.model_validate(
    {
        "name": "holidays",
        "version": 1,
        "country": "DE",
        "public_holidays": ["Christmas Day"],
        "shop_dates": [{"name": "Shop anniversary", "month": 3, "day": 15}],
        "lunar_dates": [{"name": "Double Ninth", "month": 9, "day": 9}],
        "steps": [{"name": "greeting", "after": "0s", "template": "t", "subject": "s"}],
    }
)


@pytest.mark.parametrize(
    ("day", "holiday"),
    [
        (date(2026, 12, 25), "Christmas Day"),
        (date(2026, 12, 24), None),
        (date(2026, 12, 26), None),  # a public holiday in DE, but not one the shop chose
        (date(2027, 3, 15), "Shop anniversary"),
        # Double Ninth, the 9th day of the 9th lunar month (journeys/holidays.toml)
        (date(2025, 10, 29), "Double Ninth"),
        (date(2026, 10, 18), "Double Ninth"),
        (date(2026, 10, 17), None),
        (date(2027, 10, 8), "Double Ninth"),
    ],
)
def test_which_day_is_a_holiday(day: date, holiday: str | None) -> None:
    assert holiday_on(day, CALENDAR) == holiday


def test_double_ninth_falls_where_the_holidays_package_puts_it() -> None:
    """The lunar day (the ``lunardate`` package) against the ``holidays`` package's own
    table of the Double Ninth Festival (Hong Kong's public holiday), over thirty years."""
    import holidays

    for year in range(2000, 2030):
        hong_kong = holidays.country_holidays("HK", years=year, language="en_US")
        [day] = [d for d, name in hong_kong.items() if name == "Double Ninth Festival"]
        assert holiday_on(day, CALENDAR) == "Double Ninth"


def test_a_shop_date_needs_a_real_month() -> None:
    with pytest.raises(ValueError, match="month"):
        ShopDate(name="x", month=13, day=1)


@pytest.fixture
async def db_url(tmp_path: Path) -> str:
    """A database of its own for each test: the sweep looks at every customer in it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'sweep.db'}"
    await upgrade(url)
    return url


async def buyer(
    stack, label: str, *, zone: str, days_ago: int, as_of: datetime, total: str = "40.00"
) -> str:
    cid = f"{label}-{uuid.uuid4().hex[:6]}"
    await add_customer(stack, cid, timezone=zone)
    async with stack.sessions.begin() as s:
        await order_rows.record_order(
            s,
            order_id=f"o-{cid}",
            customer_id=cid,
            total=Decimal(total),
            currency="EUR",
            lines=[TEE],
            placed_at=as_of - timedelta(days=days_ago),
        )
    return cid


async def daily_sweep(stack, as_of: datetime) -> SweepResult:
    handle = await stack.client.start_workflow(
        DailySweep.run,
        SweepInput(
            win_back=stack.journeys.config("win_back", WinBackConfig),
            birthday=stack.journeys.config("birthday", BirthdayConfig),
            lifecycle=load_lifecycle(stack.settings.journeys_dir),
            vip_care=stack.journeys.config("vip_care", VipCareConfig),
            holidays=stack.journeys.config("holidays", HolidayConfig),
            as_of=as_of,
        ),
        id=f"sweep-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.temporal_task_queue,
    )
    return await asyncio.wait_for(handle.result(), timeout=PATIENCE)


async def exists(stack, wf_id: str) -> bool:
    try:
        await stack.client.get_workflow_handle(wf_id).describe()
    except RPCError:
        return False
    return True


async def test_christmas_in_each_customers_own_date_once_a_year(stack):
    """23:30 UTC on 24 December: Christmas Day already in Berlin, still Christmas Eve in New
    York. The Berlin customer is greeted then, the New York one the next sweep; a second
    sweep on Christmas starts neither again."""
    eve = datetime(2026, 12, 24, 23, 30, tzinfo=UTC)
    berlin = await buyer(stack, "berlin", zone="Europe/Berlin", days_ago=20, as_of=eve)
    new_york = await buyer(stack, "new-york", zone="America/New_York", days_ago=20, as_of=eve)
    lapsed = await buyer(stack, "lost", zone="Europe/Berlin", days_ago=400, as_of=eve)

    first = await daily_sweep(stack, eve)

    assert await exists(stack, f"holidays:{berlin}:christmas-day:2026")
    assert not await exists(stack, f"holidays:{new_york}:christmas-day:2026")
    assert not await exists(stack, f"holidays:{lapsed}:christmas-day:2026")  # "lost": not chosen
    assert first.counts  # the daily sweep ran its own phases after the lifecycle child

    noon = datetime(2026, 12, 25, 12, 0, tzinfo=UTC)  # 07:00 in New York, 13:00 in Berlin
    await daily_sweep(stack, noon)
    assert await exists(stack, f"holidays:{new_york}:christmas-day:2026")
    again = await daily_sweep(stack, noon)
    assert again.counts  # a rerun of the same day ...

    greeting = stack.client.get_workflow_handle_for(
        HolidayGreeting.run, f"holidays:{berlin}:christmas-day:2026"
    )
    await stack.fast_forward(greeting, timedelta(hours=12))  # past the night's quiet hours
    result = await asyncio.wait_for(greeting.result(), timeout=PATIENCE)
    assert result.outcome == "greeted"
    mails = await wait_for_mail(stack.catcher, email_for(berlin), 1)
    holiday_mails = journey_mails(stack.catcher, berlin, "holidays")
    assert steps_of(holiday_mails) == ["greeting"]  # ... started nobody twice
    assert "Christmas Day" in str(holiday_mails[0]["Subject"])
    assert mails


async def test_a_vip_gets_vip_care_once_a_year(stack):
    as_of = datetime.now(UTC).replace(microsecond=0)
    vip = await buyer(stack, "vip", zone="UTC", days_ago=10, as_of=as_of, total="600.00")
    regular = await buyer(stack, "regular", zone="UTC", days_ago=10, as_of=as_of)

    await daily_sweep(stack, as_of)
    await daily_sweep(stack, as_of + timedelta(days=1))  # the next day: nobody twice

    wf_id = f"vip-care:{vip}:{as_of.year}"
    assert await exists(stack, wf_id)
    assert not await exists(stack, f"vip-care:{regular}:{as_of.year}")
    handle = stack.client.get_workflow_handle_for(VipCare.run, wf_id)
    await stack.fast_forward(handle, timedelta(days=60, hours=12))
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.outcome == "completed"
    assert result.sent == ["welcome", "tips", "early_access"]
    assert steps_of(journey_mails(stack.catcher, vip, "vip_care")) == [
        "welcome",
        "tips",
        "early_access",
    ]


async def test_double_ninth_on_each_customers_own_date_once_a_year(stack):
    """20:00 UTC on 17 October 2026: already the Double Ninth (18 October) in Shanghai,
    still the 17th in Berlin. The Shanghai customer is greeted then, the Berlin one the next
    sweep; a rerun of that day starts neither again, and the greeting says which day."""
    before = datetime(2026, 10, 17, 20, 0, tzinfo=UTC)
    shanghai = await buyer(stack, "shanghai", zone="Asia/Shanghai", days_ago=20, as_of=before)
    berlin = await buyer(stack, "berlin", zone="Europe/Berlin", days_ago=20, as_of=before)

    await daily_sweep(stack, before)
    assert await exists(stack, f"holidays:{shanghai}:double-ninth:2026")
    assert not await exists(stack, f"holidays:{berlin}:double-ninth:2026")

    noon = datetime(2026, 10, 18, 12, 0, tzinfo=UTC)
    await daily_sweep(stack, noon)
    assert await exists(stack, f"holidays:{berlin}:double-ninth:2026")
    await daily_sweep(stack, noon)

    for cid in (shanghai, berlin):
        greeting = stack.client.get_workflow_handle_for(
            HolidayGreeting.run, f"holidays:{cid}:double-ninth:2026"
        )
        if (await greeting.describe()).status == WorkflowExecutionStatus.RUNNING:
            await stack.fast_forward(greeting, timedelta(hours=12))  # past quiet hours
        assert (await asyncio.wait_for(greeting.result(), timeout=PATIENCE)).outcome == "greeted"
        await wait_for_mail(stack.catcher, email_for(cid), 1)
        mails = journey_mails(stack.catcher, cid, "holidays")
        assert steps_of(mails) == ["greeting"]  # once, whatever the reruns
        assert "Double Ninth" in str(mails[0]["Subject"])
