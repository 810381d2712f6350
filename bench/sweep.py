"""(5) The daily sweep's selection and start rate over generated customers on PostgreSQL.

Each size gets a throwaway PostgreSQL database: N customers generated with
``generate_series`` (1 in ``eligible_every`` a lapsed repeat customer, the rest recent),
then the real keyset-paged selection (store/sweep.py) over all of it, timed; then the real
start path of the sweep (activities/sweep.py) for up to ``start_cap`` of the selected, on a
task queue with no worker, so only starting is measured.
"""

from __future__ import annotations

import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.sweep import SweepActivities
from bench.stack import PG_ADMIN_URL
from core.contracts import WinBackInput
from core.ids import win_back_id
from journeys.config import WinBackConfig, load_journey
from settings import ROOT
from store.db import SessionFactory, make_engine, make_session_factory
from store.sweep import lapsed_page
from testkit.databases import throwaway_postgres

NOBODY = "bench-sweep-no-worker"


@dataclass(frozen=True)
class SweepNumbers:
    customers: int
    generate_seconds: float
    selected: int
    pages: int
    select_seconds: float
    started: int
    start_seconds: float


async def sweep(
    client: Client, *, customers: int, eligible_every: int, page_size: int, start_cap: int
) -> SweepNumbers:
    async with AsyncExitStack() as parts:
        url = await parts.enter_async_context(
            throwaway_postgres("bench_sweep", admin_dsn=PG_ADMIN_URL)
        )
        engine = make_engine(url)
        parts.push_async_callback(engine.dispose)
        sessions = make_session_factory(engine)
        as_of = datetime.now(UTC)
        t0 = time.monotonic()
        await _generate(engine, sessions, as_of, customers=customers, every=eligible_every)
        generate_seconds = time.monotonic() - t0

        rules = load_journey("win_back", ROOT / "journeys", WinBackConfig)
        t0 = time.monotonic()
        selected, pages = await _select(sessions, as_of, rules, page_size)
        select_seconds = time.monotonic() - t0

        starter = SweepActivities(sessions=sessions, client=client)
        runs = [
            (win_back_id(cid, last), WinBackInput(customer_id=cid, config=rules, group="win_back"))
            for cid, last in selected[:start_cap]
        ]
        t0 = time.monotonic()
        started = await starter.start_all(runs, task_queue=NOBODY)
        start_seconds = time.monotonic() - t0
        return SweepNumbers(
            customers=customers,
            generate_seconds=generate_seconds,
            selected=len(selected),
            pages=pages,
            select_seconds=select_seconds,
            started=started,
            start_seconds=start_seconds,
        )


async def _generate(
    engine: AsyncEngine, sessions: SessionFactory, as_of: datetime, *, customers: int, every: int
) -> None:
    """``customers`` customers in one statement; one in ``every`` a lapsed repeat customer."""
    async with sessions.begin() as s:
        await s.execute(
            text(
                "INSERT INTO customers (id, email, timezone, subscribed, attributes,"
                " order_count, last_order_at, created_at, updated_at) "
                "SELECT :prefix || lpad(i::text, 8, '0'), :prefix || i || '@example.com',"
                " 'UTC',"
                " true, '{}', CASE WHEN i % :every = 0 THEN 3 ELSE 1 END,"
                " CAST(:as_of AS timestamptz)"
                " - (CASE WHEN i % :every = 0 THEN 120 ELSE 10 END) * interval '1 day',"
                " now(), now() FROM generate_series(1, :n) AS i"
            ),
            {
                "every": every,
                "as_of": as_of,
                "n": customers,
                "prefix": f"s{uuid.uuid4().hex[:6]}-",
            },
        )
    async with engine.connect() as conn:
        await conn.execute(text("ANALYZE customers"))


async def _select(
    sessions: SessionFactory, as_of: datetime, rules: WinBackConfig, page_size: int
) -> tuple[list[tuple[str, datetime]], int]:
    """Both groups' pages, as the sweep reads them; the win-back group's rows and the page count."""
    selected: list[tuple[str, datetime]] = []
    pages = 0
    for group in ("win_back", "repeat_purchase"):
        after = ""
        while True:
            async with sessions() as s:
                rows = await lapsed_page(
                    s,
                    group=group,
                    as_of=as_of,
                    rules=rules.selection,
                    after_id=after,
                    limit=page_size,
                )
            pages += 1
            selected.extend(rows if group == "win_back" else [])
            if len(rows) < page_size:
                break
            after = rows[-1][0]
    return selected, pages
