"""The report served from its snapshot (starter/report_snapshots.py, decision 0023): a page
reads the report as last computed while it is young enough, and every figure of it is as of
the snapshot's ``as_of``; older, it is computed again from the rows. The API's background
task keeps the default reports fresh. On both stores; over real HTTP with the operator login.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from starter import report_snapshots
from starter.http import create_app
from starter.reports import DEFAULT_WINDOWS, parse_windows
from store import report_snapshots as kept_snapshots
from store import reports
from store.db import SessionFactory
from store.models import Order
from store.report_snapshots import Snapshot
from testkit.data import entered
from testkit.live_api import serving
from testkit.stack import Stack

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WINDOWS = parse_windows(DEFAULT_WINDOWS)
ADMIN = ("ops", "snapshot-password-0123")


def _tag() -> str:
    return datetime.now(UTC).strftime("%H%M%S%f")


async def _entered(sessions: SessionFactory, journey: str, customers: list[str]) -> None:
    """``customers`` entered ``journey`` at T0, every other one held out."""
    async with sessions.begin() as s:
        for n, cid in enumerate(customers):
            group = reports.CONTROL if n % 2 else reports.TREATED
            await entered(s, cid, journey=journey, group=group, at=T0)


async def _ordered(sessions: SessionFactory, order_id: str, cid: str, after: timedelta) -> None:
    async with sessions.begin() as s:
        s.add(
            Order(
                id=order_id,
                customer_id=cid,
                total=Decimal("20.00"),
                currency="EUR",
                placed_at=T0 + after,
            )
        )


def _converted(report: dict[str, Any]) -> list[int]:
    return [w["treated"]["converted"] for w in report["windows"]]


async def test_a_report_is_served_from_its_snapshot_until_it_is_too_old(
    sessions: SessionFactory,
) -> None:
    tag = _tag()
    journey, ids = f"snap{tag}", [f"s{n}-{tag}" for n in range(4)]
    await _entered(sessions, journey, ids)
    await _ordered(sessions, f"so1-{tag}", ids[0], timedelta(days=1))
    at = T0 + timedelta(days=40)

    first = await report_snapshots.journey(sessions, journey, windows=WINDOWS, max_age=600, now=at)
    await _ordered(sessions, f"so2-{tag}", ids[2], timedelta(days=1))
    young = await report_snapshots.journey(
        sessions, journey, windows=WINDOWS, max_age=600, now=at + timedelta(seconds=600)
    )
    old = await report_snapshots.journey(
        sessions, journey, windows=WINDOWS, max_age=600, now=at + timedelta(seconds=601)
    )

    assert first.computed_now and _converted(first.report) == [1, 1, 1]
    # the snapshot: the figures of its moment, all of them, as of that moment
    assert not young.computed_now
    assert young.report == first.report and young.as_of == at
    assert young.report["as_of"] == at.isoformat()
    assert young.age_seconds(at + timedelta(seconds=600)) == 600
    # too old: computed again from the rows, with the order placed since
    assert old.computed_now and _converted(old.report) == [2, 2, 2]
    assert old.report["as_of"] == (at + timedelta(seconds=601)).isoformat()
    async with sessions() as s:
        kept = await kept_snapshots.load(
            s, key=report_snapshots.key_of(journey, windows=WINDOWS, since=None)
        )
    assert kept is not None and kept.as_of == at + timedelta(seconds=601)
    assert json.loads(kept.body) == old.report


async def test_other_windows_or_since_are_other_reports_and_no_age_computes_each_time(
    sessions: SessionFactory,
) -> None:
    tag = _tag()
    journey, ids = f"snw{tag}", [f"w{n}-{tag}" for n in range(2)]
    await _entered(sessions, journey, ids)
    at = T0 + timedelta(days=40)
    await report_snapshots.journey(sessions, journey, windows=WINDOWS, max_age=600, now=at)
    await _ordered(sessions, f"wo1-{tag}", ids[0], timedelta(hours=5))

    other_windows = await report_snapshots.journey(
        sessions, journey, windows=["1d"], max_age=600, now=at
    )
    other_since = await report_snapshots.journey(
        sessions, journey, windows=WINDOWS, since=T0, max_age=600, now=at
    )
    no_age = await report_snapshots.journey(sessions, journey, windows=WINDOWS, max_age=0, now=at)

    assert other_windows.computed_now and _converted(other_windows.report) == [1]
    assert other_since.computed_now and _converted(other_since.report) == [1, 1, 1]
    assert no_age.computed_now and _converted(no_age.report) == [1, 1, 1]


async def test_a_journey_nobody_entered_is_answered_and_not_kept(sessions: SessionFactory) -> None:
    name = f"nobody{_tag()}"

    served = await report_snapshots.journey(sessions, name, windows=WINDOWS, max_age=600)

    assert not report_snapshots.entered(served.report)
    async with sessions() as s:
        key = report_snapshots.key_of(name, windows=WINDOWS, since=None)
        assert await kept_snapshots.load(s, key=key) is None


async def test_the_later_of_two_snapshots_is_kept_whatever_order_they_are_saved_in(
    sessions: SessionFactory,
) -> None:
    key = f"race{_tag()}|2d|"
    later = Snapshot(key=key, as_of=T0 + timedelta(minutes=1), body='{"n": 2}', took_seconds=1)
    earlier = Snapshot(key=key, as_of=T0, body='{"n": 1}', took_seconds=1)
    async with sessions.begin() as s:
        assert await kept_snapshots.save(s, later)
    async with sessions.begin() as s:
        assert not await kept_snapshots.save(s, earlier)

    async with sessions() as s:
        kept = await kept_snapshots.load(s, key=key)
    assert kept is not None and (kept.as_of, kept.body) == (later.as_of, '{"n": 2}')


async def test_refresh_computes_the_old_or_missing_default_reports_and_forgets_unread_ones(
    sessions: SessionFactory,
) -> None:
    tag = _tag()
    journey = f"snr{tag}"
    await _entered(sessions, journey, [f"r{n}-{tag}" for n in range(2)])
    forgotten = Snapshot(
        key=f"old{tag}|2d|", as_of=T0 - timedelta(days=2), body="{}", took_seconds=0
    )
    async with sessions.begin() as s:
        await kept_snapshots.save(s, forgotten)
    mine = report_snapshots.key_of(journey, windows=WINDOWS, since=None)
    overview = report_snapshots.key_of(None, windows=WINDOWS, since=None)

    first = await report_snapshots.refresh(sessions, every=300, now=T0)
    again = await report_snapshots.refresh(sessions, every=300, now=T0 + timedelta(seconds=299))
    later = await report_snapshots.refresh(sessions, every=300, now=T0 + timedelta(seconds=300))

    assert mine in first and overview in first
    assert mine not in again and overview not in again  # fresh enough: left alone
    assert mine in later and overview in later
    async with sessions() as s:
        assert await kept_snapshots.load(s, key=forgotten.key) is None
        kept = await kept_snapshots.load(s, key=overview)
    assert kept is not None
    assert journey in {r["journey"] for r in json.loads(kept.body)["journeys"]}


def _auth() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(":".join(ADMIN).encode()).decode()}


async def test_the_api_keeps_the_reports_fresh_and_serves_them_with_their_age(
    make_stack: Any,
) -> None:
    """Over real HTTP, the API as ``make run`` starts it (lifespan on): its background task
    computes the journey's report at start, the page and the JSON serve that snapshot with
    an ``Age`` header, and an order placed since shows only in a report computed later."""
    stack: Stack = await make_stack()
    tag = _tag()
    journey, ids = f"sna{tag}", [f"a{n}-{tag}" for n in range(4)]
    await _entered(stack.sessions, journey, ids)
    await _ordered(stack.sessions, f"ao1-{tag}", ids[0], timedelta(days=1))
    settings = stack.settings.model_copy(
        update={
            "admin_user": ADMIN[0],
            "admin_password": ADMIN[1],
            "report_max_age_seconds": 3600,
            "report_refresh_seconds": 3600,
        }
    )
    key = report_snapshots.key_of(journey, windows=WINDOWS, since=None)
    async with serving(create_app(settings, journeys=stack.journeys)) as base:
        async with asyncio.timeout(60):
            while True:  # the refresher's first round, started with the app
                async with stack.sessions() as s:
                    kept = await kept_snapshots.load(s, key=key)
                if kept is not None:
                    break
                await asyncio.sleep(0.2)
        await _ordered(stack.sessions, f"ao2-{tag}", ids[2], timedelta(days=1))
        async with httpx.AsyncClient(base_url=base, headers=_auth()) as http:
            answer = await http.get(f"/v1/reports/journeys/{journey}")
            page = await http.get(f"/reports/{journey}")
            overview = await http.get("/reports")
            other = await http.get(f"/v1/reports/journeys/{journey}", params={"windows": "30d"})
            refused = await http.get(
                f"/v1/reports/journeys/{journey}", headers={"Authorization": ""}
            )

    assert answer.status_code == 200, answer.text
    assert answer.json()["as_of"] == kept.as_of.isoformat()
    assert answer.json()["windows"][0]["treated"]["converted"] == 1  # as of the snapshot
    assert 0 <= int(answer.headers["Age"]) < 60
    assert page.status_code == 200 and "Age" in page.headers
    assert f"As of {kept.as_of.isoformat()[:16]} UTC" in page.text
    assert overview.status_code == 200 and f"/reports/{journey}" in overview.text
    assert "As of" in overview.text and "Age" in overview.headers
    # asked with other windows: computed now, with the order placed since
    assert other.json()["windows"][0]["treated"]["converted"] == 2
    assert int(other.headers["Age"]) == 0
    assert refused.status_code == 401
