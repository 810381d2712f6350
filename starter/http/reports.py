"""The effect report over HTTP, behind the operator login (ADMIN_USER / ADMIN_PASSWORD,
HTTP Basic; never the write key):

  GET /v1/reports/journeys             every journey's figures per window (JSON)
  GET /v1/reports/journeys/{journey}   one journey's, per window and per step (JSON)
  GET /reports, /reports/{journey}     the same as pages a marketer reads (charts inline)
  GET /metrics                         the API's counters for Prometheus (observability.py:
                                       opens and clicks, conversions; HTTP Basic in the
                                       scrape config)

Query: ``since`` (ISO date or time, UTC if no zone), ``windows`` (e.g. ``2d,10d,30d``).

A report is served from its snapshot while that is at most ``REPORT_MAX_AGE_SECONDS`` old
(starter/report_snapshots.py); the ``Age`` header says how old its figures are (RFC 9111,
5.1), the report's ``as_of`` when they are from.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from observability import REGISTRY
from starter import report_page, report_snapshots
from starter.http.deps import JourneysDep, SettingsDep
from starter.report_snapshots import Served
from starter.reports import DEFAULT_WINDOWS, parse_windows

REALM = 'Basic realm="reports", charset="UTF-8"'


def operator(request: Request, settings: SettingsDep) -> str:
    """The operator's login, checked in constant time; 401 asks the browser for it."""
    if not settings.admin_password:
        # Nobody can log in: a 401 that says why (not a 5xx: nothing is broken).
        raise HTTPException(401, "no operator login is set up: set ADMIN_PASSWORD")
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user = password = ""
    ok = scheme.lower() == "basic"
    ok &= secrets.compare_digest(user.encode(), settings.admin_user.encode())
    ok &= secrets.compare_digest(password.encode(), settings.admin_password.encode())
    if not ok:
        raise HTTPException(401, "operator login required", headers={"WWW-Authenticate": REALM})
    return user


def _since(since: str | None) -> datetime | None:
    if not since:
        return None
    try:
        at = datetime.fromisoformat(since)
    except ValueError as exc:
        raise HTTPException(422, f"since {since!r}: expected an ISO date, e.g. 2026-03-01") from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _windows(windows: str) -> list[str]:
    try:
        return parse_windows(windows)
    except ValueError as exc:
        raise HTTPException(422, f"windows: {exc}") from exc


router = APIRouter(tags=["reports"], dependencies=[Depends(operator)])
Since = Annotated[str | None, Query(description="ISO date or time (UTC)")]
Windows = Annotated[str, Query(description="e.g. 2d,10d,30d")]
PAGE_HEADERS = {"Content-Security-Policy": report_page.CONTENT_SECURITY_POLICY}


async def _one(
    journeys: JourneysDep, settings: SettingsDep, journey: str, since: str | None, windows: str
) -> Served:
    served = await report_snapshots.journey(
        journeys.sessions,
        journey,
        windows=_windows(windows),
        since=_since(since),
        max_age=settings.report_max_age_seconds,
    )
    if not report_snapshots.entered(served.report):
        raise HTTPException(404, f"no entries of journey {journey!r} (since {since or 'ever'})")
    return served


async def _all(
    journeys: JourneysDep, settings: SettingsDep, since: str | None, windows: list[str]
) -> Served:
    return await report_snapshots.overview(
        journeys.sessions,
        windows=windows,
        since=_since(since),
        max_age=settings.report_max_age_seconds,
    )


def _aged(response: Response, served: Served) -> Response:
    response.headers["Age"] = str(served.age_seconds())
    return response


@router.get("/v1/reports/journeys")
async def journeys_json(
    journeys: JourneysDep,
    settings: SettingsDep,
    response: Response,
    since: Since = None,
    windows: Windows = DEFAULT_WINDOWS,
) -> dict[str, Any]:
    served = await _all(journeys, settings, since, _windows(windows))
    _aged(response, served)
    found: dict[str, Any] = served.report
    return found


@router.get("/v1/reports/journeys/{journey}")
async def journey_json(
    journey: str,
    journeys: JourneysDep,
    settings: SettingsDep,
    response: Response,
    since: Since = None,
    windows: Windows = DEFAULT_WINDOWS,
) -> dict[str, Any]:
    served = await _one(journeys, settings, journey, since, windows)
    _aged(response, served)
    report: dict[str, Any] = served.report
    return report


@router.get("/reports", response_class=HTMLResponse)
async def overview_page(
    journeys: JourneysDep,
    settings: SettingsDep,
    since: Since = None,
    windows: Windows = DEFAULT_WINDOWS,
) -> Response:
    chosen = _windows(windows)
    served = await _all(journeys, settings, since, chosen)
    journeys_found = served.report["journeys"]
    page = report_page.overview(journeys_found, windows=chosen, as_of=served.as_of.isoformat())
    return _aged(HTMLResponse(page, headers=PAGE_HEADERS), served)


@router.get("/reports/{journey}", response_class=HTMLResponse)
async def journey_html(
    journey: str,
    journeys: JourneysDep,
    settings: SettingsDep,
    since: Since = None,
    windows: Windows = DEFAULT_WINDOWS,
) -> Response:
    served = await _one(journeys, settings, journey, since, windows)
    page = report_page.journey_page(served.report)
    return _aged(HTMLResponse(page, headers=PAGE_HEADERS), served)


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    """The API's own counters in Prometheus' text format (the worker serves the SDK's and
    ``journey_sends`` on ``METRICS_BIND``)."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
