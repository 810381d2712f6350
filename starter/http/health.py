"""GET /healthz: Temporal, database and SMTP reachability."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import aiosmtplib
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from settings import Settings
from starter.api import Journeys
from starter.http.deps import JourneysDep, SettingsDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz(j: JourneysDep, settings: SettingsDep) -> JSONResponse:
    """Reachability of Temporal, the database and the SMTP server; 503 if one is down."""
    checks = {
        "temporal": _check(j.client.service_client.check_health()),
        "database": _check(_db_ok(j)),
        "smtp": _check(_smtp_ok(settings)),
    }
    results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
    healthy = all(v == "ok" for v in results.values())
    return JSONResponse(status_code=200 if healthy else 503, content=results)


async def _check(probe: Awaitable[Any]) -> str:
    try:
        await asyncio.wait_for(probe, timeout=3)
    except Exception as exc:  # a health check reports every failure, whatever it is
        return f"error: {type(exc).__name__}: {exc}"[:300]
    return "ok"


async def _db_ok(j: Journeys) -> None:
    async with j.sessions() as s:
        await s.execute(text("SELECT 1"))


async def _smtp_ok(settings: Settings) -> None:
    smtp = aiosmtplib.SMTP(
        hostname=settings.smtp_target_host,
        port=settings.smtp_port,
        timeout=3,
        use_tls=settings.smtp_use_tls,
        start_tls=False,
    )
    await smtp.connect()
    await smtp.quit()
