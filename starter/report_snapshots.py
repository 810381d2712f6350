"""The effect report as served: from its snapshot while that is young enough, else computed
from the rows (starter.reports) and kept for the next reader; and the API's background task
that keeps the default reports fresh (docs/decisions/0023-report-snapshots.md).

At a million sends computing a journey's report reads them all (about 10 s on two cores,
BENCHMARKS.md 7-report); reading its snapshot takes milliseconds. Every figure of a served
report is as of its ``as_of`` (shown on the page, and as the HTTP ``Age`` header): a
snapshot is one computation kept whole, never figures of different moments mixed.

Settings: ``REPORT_MAX_AGE_SECONDS`` (serve a snapshot at most this old; 0: compute every
time) and ``REPORT_REFRESH_SECONDS`` (how often the API recomputes the overview's and every
journey's report for the default windows; 0: never).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starter.reports import DEFAULT_WINDOWS, all_journeys, journey_report, parse_windows
from store import report_snapshots, reports
from store.db import SessionFactory, readers
from store.report_snapshots import Snapshot

log = logging.getLogger("starter.report_snapshots")

OVERVIEW = "*"  # the overview's place in a key (a journey name is a TOML file's stem)
KEEP_UNREAD = timedelta(days=1)  # snapshots older than this are forgotten by the refresher
KEY_LENGTH = 255  # report_snapshots.key; a longer key is computed every time, not kept


@dataclass(frozen=True)
class Served:
    report: Any  # a journey's report (starter.reports.journey_report), or {"journeys": [...]}
    as_of: datetime  # every figure is as of this moment
    computed_now: bool  # False: read from the snapshot

    def age_seconds(self, now: datetime | None = None) -> int:
        """Whole seconds since ``as_of``: the HTTP ``Age`` header (RFC 9111, 5.1)."""
        return max(0, int(((now or datetime.now(UTC)) - self.as_of).total_seconds()))


def key_of(journey: str | None, *, windows: list[str], since: datetime | None) -> str:
    """What a report is kept under: the journey (or the overview), windows and since."""
    return f"{journey or OVERVIEW}|{','.join(windows)}|{since.isoformat() if since else ''}"


Compute = Callable[[datetime], Awaitable[Any]]


def entered(report: Any) -> bool:
    """Whether a journey's report counts anyone (in any window, either group)."""
    return any(w["treated"]["customers"] + w["control"]["customers"] for w in report["windows"])


async def journey(
    sessions: SessionFactory,
    name: str,
    *,
    windows: list[str],
    since: datetime | None = None,
    max_age: float,
    now: datetime | None = None,
) -> Served:
    """One journey's report, from a snapshot at most ``max_age`` seconds old if one is kept.
    A journey nobody entered is computed (it is cheap: no rows) and never kept, so made-up
    names leave nothing behind."""
    key = key_of(name, windows=windows, since=since)
    compute = _journey_at(sessions, name, windows, since)
    return await _served(sessions, key, compute, max_age=max_age, now=now, keep=entered)


async def overview(
    sessions: SessionFactory,
    *,
    windows: list[str],
    since: datetime | None = None,
    max_age: float,
    now: datetime | None = None,
) -> Served:
    """Every journey's figures per window (``{"journeys": [...]}``), as ``journey``."""

    key = key_of(None, windows=windows, since=since)
    compute = _overview_at(sessions, windows, since)
    return await _served(sessions, key, compute, max_age=max_age, now=now)


async def _served(
    sessions: SessionFactory,
    key: str,
    compute: Compute,
    *,
    max_age: float,
    now: datetime | None,
    keep: Callable[[Any], bool] = lambda _: True,
) -> Served:
    at = now or datetime.now(UTC)
    if max_age > 0 and len(key) <= KEY_LENGTH:
        async with readers(sessions)() as s:
            kept = await report_snapshots.load(s, key=key)
        if kept is not None and at - kept.as_of <= timedelta(seconds=max_age):
            return Served(report=json.loads(kept.body), as_of=kept.as_of, computed_now=False)
    return await _compute(sessions, key, compute, at=at, keep=keep)


async def _compute(
    sessions: SessionFactory,
    key: str,
    compute: Compute,
    *,
    at: datetime,
    keep: Callable[[Any], bool] = lambda _: True,
) -> Served:
    started = time.monotonic()
    report = await compute(at)
    took = time.monotonic() - started
    if keep(report) and len(key) <= KEY_LENGTH:
        snapshot = Snapshot(key=key, as_of=at, body=json.dumps(report), took_seconds=took)
        async with sessions.begin() as s:
            await report_snapshots.save(s, snapshot)
    return Served(report=report, as_of=at, computed_now=True)


async def refresh(
    sessions: SessionFactory,
    *,
    every: float,
    windows: str = DEFAULT_WINDOWS,
    now: datetime | None = None,
) -> list[str]:
    """Compute again the overview's and each entered journey's report for ``windows`` (no
    since) whose snapshot is older than ``every`` seconds (or missing), one after another;
    forget snapshots nobody refreshed for ``KEEP_UNREAD``. Another API process that did it
    a moment ago leaves nothing to do. Returns the keys computed."""
    at = now or datetime.now(UTC)
    chosen = parse_windows(windows)
    async with readers(sessions)() as s:
        names = await reports.journeys_entered(s)
    wanted: list[tuple[str, Compute]] = []
    for name in [None, *names]:
        key = key_of(name, windows=chosen, since=None)
        async with readers(sessions)() as s:
            kept = await report_snapshots.as_of(s, key=key)
        if kept is not None and at - kept < timedelta(seconds=every):
            continue
        if name is None:
            wanted.append((key, _overview_at(sessions, chosen, None)))
        else:
            wanted.append((key, _journey_at(sessions, name, chosen, None)))
    for key, compute in wanted:
        # each report as of when it is computed (a round at a million sends takes a while)
        await _compute(sessions, key, compute, at=at if now else datetime.now(UTC))
    async with sessions.begin() as s:
        await report_snapshots.prune(s, before=at - KEEP_UNREAD)
    return [key for key, _ in wanted]


def _overview_at(sessions: SessionFactory, windows: list[str], since: datetime | None) -> Compute:
    async def compute(at: datetime) -> Any:
        return {"journeys": await all_journeys(sessions, windows=windows, since=since, as_of=at)}

    return compute


def _journey_at(
    sessions: SessionFactory, name: str, windows: list[str], since: datetime | None
) -> Compute:
    async def compute(at: datetime) -> Any:
        return await journey_report(sessions, name, windows=windows, since=since, as_of=at)

    return compute


async def keep_fresh(sessions: SessionFactory, *, every: float) -> None:
    """The API's background task: ``refresh`` every ``every`` seconds until cancelled. A
    failed round (the store down) is logged and tried again at the next."""
    while True:
        try:
            refreshed = await refresh(sessions, every=every)
            if refreshed:
                log.info("report snapshots refreshed: %s", ", ".join(refreshed))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("refreshing the report snapshots failed; next try in %g s", every)
        await asyncio.sleep(every)
