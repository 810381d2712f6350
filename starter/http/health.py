"""GET /healthz: is Temporal, the store and the SMTP server reachable, and does a worker poll
the task queue? A summary only.

Cheap on purpose, since anyone may call it: the three probes run together at most once per
HEALTH_PROBE_SECONDS and concurrent requests share one round; answers in between repeat the
last summary. Each part is "ok", "error: timeout" or "error: unreachable"; what went wrong
is logged, never answered (an error text can name hosts, users or versions). While the
workers' circuit breaker holds sending, smtp is "paused (<kind and codes>)". ``workers`` is
"ok" when Temporal has seen a worker poll TEMPORAL_TASK_QUEUE for workflow tasks (its
DescribeTaskQueue pollers: those seen in the last minutes), else "error: no worker polls
<queue>" (journeys do not move); ``worker_pollers`` counts them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import aiosmtplib
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from settings import Settings
from starter.api import Journeys
from starter.http.deps import JourneysDep, SettingsDep
from store import sends

log = logging.getLogger("starter.http")
router = APIRouter(tags=["operations"])
PROBE_TIMEOUT = 3.0  # seconds per part

Summary = dict[str, str | int]
PARTS = ("temporal", "database", "smtp", "workers")  # each "ok" when healthy


class Health:
    """The last probe round's summary and when it was taken; one round at a time."""

    def __init__(self) -> None:
        self._summary: Summary | None = None
        self._taken = 0.0
        self._lock = asyncio.Lock()

    async def summary(self, every: float, probe: Callable[[], Awaitable[Summary]]) -> Summary:
        async with self._lock:  # a request that waited here gets the round it waited for
            if self._summary is None or time.monotonic() - self._taken >= every:
                self._summary = await probe()
                self._taken = time.monotonic()
            return self._summary


def the_health(request: Request) -> Health:
    return request.app.state.health  # type: ignore[no-any-return]


@router.get("/healthz")
async def healthz(
    health: Annotated[Health, Depends(the_health)], j: JourneysDep, settings: SettingsDep
) -> JSONResponse:
    """{"temporal": ..., "database": ..., "smtp": ..., "workers": ..., "worker_pollers": N},
    each part "ok", "error: timeout" or "error: unreachable" (workers: "error: no worker
    polls <queue>"); 200 when all are ok, else 503."""
    results = await health.summary(settings.health_probe_seconds, lambda: _probe(j, settings))
    healthy = all(results.get(part) == "ok" for part in PARTS)
    return JSONResponse(status_code=200 if healthy else 503, content=results)


async def _probe(j: Journeys, settings: Settings) -> Summary:
    pollers: list[int] = []
    checks = {
        "temporal": _check("temporal", j.client.service_client.check_health()),
        "database": _check("database", _db_ok(j)),
        "smtp": _check("smtp", _smtp_ok(settings)),
        "workers": _check("workers", _polled(j, settings.temporal_task_queue, pollers)),
    }
    results: Summary = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
    if pollers:
        results["worker_pollers"] = pollers[0]
        if pollers[0] == 0:
            results["workers"] = f"error: no worker polls {settings.temporal_task_queue}"
    if results["database"] == "ok" and (paused := await _smtp_paused(j, settings)):
        results["smtp"] = f"paused ({paused})"  # the workers' circuit breaker holds sending
    return results


async def _smtp_paused(j: Journeys, settings: Settings) -> str | None:
    """The reason sending is paused (activities/breaker.py: a kind and codes, no text from
    the relay), or None."""
    relay = f"{settings.smtp_target_host}:{settings.smtp_port}"
    try:
        async with j.sessions() as s:
            found = await asyncio.wait_for(sends.breaker(s, relay=relay), timeout=PROBE_TIMEOUT)
    except Exception as exc:  # the summary stays what the probes said
        log.warning("health: reading the SMTP breaker failed: %s: %s", type(exc).__name__, exc)
        return None
    if found is None or found.opened_at is None:
        return None
    return found.reason or "relay failures"


async def _check(part: str, probe: Awaitable[Any]) -> str:
    try:
        await asyncio.wait_for(probe, timeout=PROBE_TIMEOUT)
    except TimeoutError:
        log.warning("health: %s did not answer within %s s", part, PROBE_TIMEOUT)
        return "error: timeout"
    except Exception as exc:  # a health check reports every failure, whatever it is
        log.warning("health: %s unreachable: %s: %s", part, type(exc).__name__, exc)
        return "error: unreachable"
    return "ok"


async def _polled(j: Journeys, task_queue: str, found: list[int]) -> None:
    """How many workers Temporal saw polling ``task_queue`` for workflow tasks."""
    answer = await j.client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=j.client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    found.append(len(answer.pollers))


async def _db_ok(j: Journeys) -> None:
    async with j.sessions() as s:
        await s.execute(text("SELECT 1"))


async def _smtp_ok(settings: Settings) -> None:
    smtp = aiosmtplib.SMTP(
        hostname=settings.smtp_target_host,
        port=settings.smtp_port,
        timeout=PROBE_TIMEOUT,
        use_tls=settings.smtp_use_tls,
        start_tls=False,
    )
    await smtp.connect()
    await smtp.quit()
