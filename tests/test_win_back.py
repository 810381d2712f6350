"""Win-back and birthdays from the daily sweep, with the 15-day list cleanup."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from temporalio.client import ScheduleCalendarSpec
from temporalio.service import RPCError

from core.contracts import SweepInput, SweepResult
from core.zones import zone_at_local_hour
from journeys.config import BirthdayConfig, WinBackConfig, load_journey
from settings import ROOT
from starter.schedule import SCHEDULE_ID, ensure_daily_sweep
from store import repo
from store.db import make_engine, make_session_factory
from store.migrate import upgrade
from store.models import Customer, Suppression
from store.sweep import birthday_dates, lapsed_page
from testkit.data import TEE, abandon_cart, add_customer, email_for, lapsed_customer
from testkit.databases import throwaway_postgres
from testkit.engagement import APPLE_MPP, PERSON, SCANNER, delivered, live, read_later
from testkit.mail import journey_mails, parts, steps_of, tracked_links, wait_for_mail
from testkit.waiting import PATIENCE, eventually
from workflows.sweep import DailySweep
from workflows.win_back import WinBack

AS_OF = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def db_url(tmp_path: Path) -> str:
    """A database of its own for each test: the sweep looks at every customer in it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'sweep.db'}"
    await upgrade(url)
    return url


async def customer(stack, label: str, *, orders: list[int], emailed_days_ago: int | None = None):
    """A customer whose orders were placed the given numbers of days before AS_OF."""
    cid = f"{label}-{uuid.uuid4().hex[:6]}"
    await lapsed_customer(stack, cid, as_of=AS_OF, orders=orders, emailed_days_ago=emailed_days_ago)
    return cid


async def sweep(stack, *, as_of: datetime = AS_OF, page_size: int = 3) -> SweepResult:
    win_back = stack.journeys.config("win_back", WinBackConfig)
    win_back = win_back.model_copy(
        update={
            "sweep": win_back.sweep.model_copy(update={"page_size": page_size, "pages_per_run": 2})
        }
    )
    handle = await stack.client.start_workflow(
        DailySweep.run,
        SweepInput(
            win_back=win_back,
            birthday=stack.journeys.config("birthday", BirthdayConfig),
            as_of=as_of,
        ),
        id=f"sweep-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.temporal_task_queue,
    )
    return await asyncio.wait_for(handle.result(), timeout=PATIENCE)


def win_back_handle(stack, cid: str, last_order_days: int):
    last = AS_OF - timedelta(days=last_order_days)
    return stack.client.get_workflow_handle_for(WinBack.run, f"win-back:{cid}:{last:%Y%m%d}")


async def started(stack, cid: str, last_order_days: int) -> bool:
    try:
        await win_back_handle(stack, cid, last_order_days).describe()
    except RPCError:
        return False
    return True


async def test_the_sweep_picks_exactly_the_right_customers(stack):
    picked = {
        await customer(stack, "repeat-90d", orders=[200, 90]): 90,
        await customer(stack, "repeat-91d", orders=[300, 91]): 91,
        await customer(stack, "emailed-8d-ago", orders=[300, 120], emailed_days_ago=8): 120,
        await customer(stack, "single-180d", orders=[180]): 180,
        await customer(stack, "single-181d", orders=[181]): 181,
    }
    left_out = {
        await customer(stack, "repeat-89d", orders=[200, 89]): 89,
        await customer(stack, "single-179d", orders=[179]): 179,
        await customer(stack, "single-100d", orders=[100]): 100,
        await customer(stack, "emailed-6d-ago", orders=[300, 120], emailed_days_ago=6): 120,
        await customer(stack, "suppressed", orders=[300, 120]): 120,
        await customer(stack, "unsubscribed", orders=[300, 120]): 120,
        await customer(stack, "already-running", orders=[300, 120]): 120,
        await customer(stack, "never-ordered", orders=[]): 0,
    }
    by_label = {cid.rsplit("-", 1)[0]: cid for cid in left_out}
    async with stack.sessions.begin() as s:
        await repo.suppress(
            s, email=email_for(by_label["suppressed"]), customer_id=None, reason="complaint"
        )
        (await s.get(Customer, by_label["unsubscribed"])).subscribed = False
        running = await s.get(Customer, by_label["already-running"])
        running.winback_for = running.last_order_at

    result = await sweep(stack)

    assert result.counts["win_back"].selected == 3
    assert result.counts["repeat_purchase"].selected == 2
    assert result.counts["win_back"].started + result.counts["repeat_purchase"].started == 5
    for cid, days in picked.items():
        assert await started(stack, cid, days), cid
    for cid, days in left_out.items():
        assert not await started(stack, cid, days), cid
    assert result.counts["win_back"].pages >= 2  # paged, with continue-as-new between runs

    again = await sweep(stack)  # a rerun of the same day
    assert sum(c.started for c in again.counts.values()) == 0
    assert sum(c.selected for c in again.counts.values()) == 0


async def test_extra_filters_from_the_config_need_no_code(make_stack):
    stack = await make_stack(
        win_back={"selection": {"min_average_order_value": 60.0, "never_bought_skus": ["HAT-3"]}}
    )
    cheap = await customer(stack, "cheap", orders=[300, 120])  # orders of 50.00
    result = await sweep(stack)
    assert result.counts["win_back"].selected == 0
    assert not await started(stack, cheap, 120)


async def _offer(stack, label: str = "quiet") -> tuple[str, Any]:
    cid = await customer(stack, label, orders=[300, 120])
    result = await sweep(stack)
    assert result.counts["win_back"].started == 1
    mails = await wait_for_mail(stack.catcher, email_for(cid), 1)
    assert steps_of(mails) == ["win_back_offer"]
    return cid, win_back_handle(stack, cid, 120)


async def test_an_order_after_the_offer_is_a_win(stack):
    cid, handle = await _offer(stack)
    text_part, _ = parts(journey_mails(stack.catcher, cid, "win_back")[0])
    assert "BACK-" in text_part  # the coupon
    await stack.journeys.order_placed({"customer_id": cid, "order_id": f"{cid}-new", "total": "20"})
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.outcome == "won_back"


async def test_an_open_after_the_offer_ends_it_without_a_last_call(stack, http):
    cid, handle = await _offer(stack)
    _, html = parts(journey_mails(stack.catcher, cid, "win_back")[0])
    (pixel,) = tracked_links(html, "o")
    await read_later(stack, cid)  # a person, not a mailbox provider's fetch at delivery
    assert (await http.get(pixel, headers=PERSON)).status_code == 200
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.outcome == "engaged"
    assert steps_of(journey_mails(stack.catcher, cid, "win_back")) == ["win_back_offer"]


async def test_a_scanner_and_an_image_proxy_neither_end_it_nor_save_from_sunset(stack):
    # Issue 14: machines fetch every link and image at delivery; only a person reacts.
    cid, handle = await _offer(stack)
    _, html = parts(journey_mails(stack.catcher, cid, "win_back")[0])
    await delivered(stack, cid)
    async with live(stack) as client:
        for link in tracked_links(html):
            assert (await client.get(link, headers=SCANNER)).status_code == 302
            assert (await client.head(link, headers=PERSON)).status_code == 302
        assert (await client.get(tracked_links(html, "o")[0], headers=APPLE_MPP)).is_success
    assert (await handle.query(WinBack.state)).engagements == []

    await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    mails = journey_mails(stack.catcher, cid, "win_back")
    assert steps_of(mails) == ["win_back_offer", "last_call"]  # it did not end "engaged"
    _, last_call = parts(mails[1])
    await delivered(stack, cid, 2)
    async with live(stack) as client:
        assert (await client.get(tracked_links(last_call, "o")[0], headers=APPLE_MPP)).is_success
    await stack.fast_forward(handle, timedelta(days=15, minutes=2))
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.outcome == "sunset"


async def test_clicking_stay_in_the_last_call_keeps_the_address(stack, http):
    cid, handle = await _offer(stack)
    await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    mails = journey_mails(stack.catcher, cid, "win_back")
    assert steps_of(mails) == ["win_back_offer", "last_call"]
    text_part, html = parts(mails[1])
    stay = next(line.split(": ", 1)[1] for line in text_part.splitlines() if "/s/" in line)
    assert stay in html  # the stay link is not rewritten through the tracker

    page = await http.get(stay.replace("https://shop.test", ""))  # a page; GET changes nothing
    assert page.status_code == 200 and '<form method="post">' in page.text
    answer = await http.post(stay.replace("https://shop.test", ""))  # its button
    assert answer.status_code == 200 and "keep getting our emails" in answer.text
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.outcome == "stayed"
    async with stack.sessions() as s:
        assert await s.get(Suppression, email_for(cid)) is None


async def test_no_reaction_within_15_days_of_the_last_call_sunsets_the_address(stack):
    cid, handle = await _offer(stack)
    await stack.fast_forward(handle, timedelta(days=7 + 15, minutes=2))
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)

    assert result.outcome == "sunset"
    async with stack.sessions() as s:
        suppression = await s.get(Suppression, email_for(cid))
    assert suppression is not None and suppression.reason == "sunset"
    assert "within 15 days" in (suppression.detail or "")

    # Sunset: nothing from the other journeys either ...
    cart = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(cart, timedelta(hours=1, minutes=5))
    assert (await asyncio.wait_for(cart.result(), timeout=PATIENCE)).outcome == "suppressed"
    assert journey_mails(stack.catcher, cid, "cart_recovery") == []
    # ... until a later order brings the address back.
    await stack.journeys.order_placed({"customer_id": cid, "order_id": f"{cid}-back", "total": "9"})
    async with stack.sessions() as s:
        assert await s.get(Suppression, email_for(cid)) is None


def test_birthday_dates_cover_every_time_zone_and_29_february():
    noon = datetime(2027, 2, 28, 12, 0, tzinfo=UTC)  # 2027 has no 29 February
    # At noon UTC it is 28 February from UTC-12 up to UTC+11, and 1 March beyond.
    assert birthday_dates(noon) == {"02-28": ["02-28", "02-29"], "03-01": ["03-01"]}
    leap = datetime(2028, 2, 28, 12, 0, tzinfo=UTC)
    assert birthday_dates(leap) == {"02-28": ["02-28"], "02-29": ["02-29"]}


async def test_birthdays_on_the_right_local_day_once_a_year(stack):
    here = zone_at_local_hour(11)
    local_today = AS_OF.astimezone(ZoneInfo(here)).date()
    tomorrow = local_today + timedelta(days=1)
    born_today = f"b-today-{uuid.uuid4().hex[:6]}"
    born_tomorrow = f"b-tomorrow-{uuid.uuid4().hex[:6]}"
    for cid, day in ((born_today, local_today), (born_tomorrow, tomorrow)):
        await add_customer(stack, cid, timezone=here)
        await stack.journeys.identify(
            customer_id=cid, traits={"birthday": f"1990-{day.month:02d}-{day.day:02d}"}
        )

    first = await sweep(stack)
    assert first.counts["birthday"].started == 1
    (mail,) = await wait_for_mail(stack.catcher, email_for(born_today), 1)
    assert mail["Subject"] == "Happy birthday, Ada! A gift for you"
    assert "BDAY-" in parts(mail)[0]
    assert stack.catcher.to(email_for(born_tomorrow)) == []

    second = await sweep(stack)  # the same day again: once a year
    assert second.counts["birthday"].started == 0


async def test_the_schedule_is_created_once_updated_after_and_runs_the_sweep(stack):
    created = await ensure_daily_sweep(
        stack.client, stack.journeys, stack.settings.temporal_task_queue
    )
    updated = await ensure_daily_sweep(
        stack.client, stack.journeys, stack.settings.temporal_task_queue
    )
    handle = stack.client.get_schedule_handle(SCHEDULE_ID)
    try:
        assert (created, updated) in {("created", "updated"), ("updated", "updated")}
        described = await handle.describe()
        (calendar,) = described.schedule.spec.calendars
        assert isinstance(calendar, ScheduleCalendarSpec)
        assert (calendar.hour[0].start, calendar.minute[0].start) == (10, 0)
        assert described.schedule.spec.time_zone_name == "UTC"

        await handle.trigger()
        described = await eventually(handle.describe, lambda d: bool(d.info.recent_actions))
        (action,) = described.info.recent_actions
        run = stack.client.get_workflow_handle(action.action.workflow_id)
        result = await asyncio.wait_for(run.result(), timeout=PATIENCE)
        assert set(result["counts"]) == {"sunset", "win_back", "repeat_purchase", "birthday"}
    finally:
        await handle.delete()


@pytest.fixture
async def big_postgres() -> AsyncIterator[str]:
    async with throwaway_postgres("journeys_sweep") as url:
        yield url


async def test_a_sweep_over_100k_customers_on_postgresql_pages_through_them(big_postgres):
    engine = make_engine(big_postgres)
    sessions = make_session_factory(engine)
    async with sessions.begin() as s:
        # 100,000 customers; every 1,000th is a lapsed repeat customer.
        await s.execute(
            text(
                "INSERT INTO customers (id, email, timezone, subscribed, attributes, order_count,"
                " last_order_at, created_at, updated_at) "
                "SELECT 'gen-' || lpad(i::text, 6, '0'), 'gen' || i || '@example.com', 'UTC', true,"
                " '{}', CASE WHEN i % 1000 = 0 THEN 3 ELSE 1 END,"
                " CAST(:as_of AS timestamptz)"
                " - (CASE WHEN i % 1000 = 0 THEN 120 ELSE 10 END) * interval '1 day',"
                " now(), now() FROM generate_series(1, 100000) AS i"
            ),
            {"as_of": AS_OF},
        )
    largest, pages, after, total = 0, 0, "", 0
    rules = load_journey("win_back", ROOT / "journeys", WinBackConfig).selection
    while True:
        async with sessions() as s:
            rows = await lapsed_page(
                s, group="win_back", as_of=AS_OF, rules=rules, after_id=after, limit=40
            )
        if not rows:
            break
        pages += 1
        largest = max(largest, len(rows))
        total += len(rows)
        after = rows[-1][0]
    await engine.dispose()
    assert total == 100
    assert largest <= 40 and pages == 3  # never more than one page in memory (time: bench/)
