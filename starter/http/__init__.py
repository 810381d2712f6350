"""HTTP service: Segment-compatible ingestion, tracking links, one-click unsubscribe.

    python -m starter.http        (make run starts it on API_HOST:API_PORT)

Endpoints (README "HTTP API" has a curl example for each), one router module each:
  ingest       POST /v1/identify, /v1/track, /v1/batch (and page, screen, group, alias:
               accepted, ignored); write key as Basic user, Bearer or writeKey in the body;
               checked before the body is read (``body``); calls validated in ``segment``
  tracking     GET  /t/o/<token> open pixel              GET /t/c/<token> click redirect
  unsubscribe  GET  /u/<token> page, POST /u/<token> RFC 8058 one-click;
               GET /s/<token> "keep writing to me" page, POST /s/<token> its button
  confirm      GET  /confirm/<token> double opt-in page, POST /confirm/<token> its button
  reports      GET  /reports, /v1/reports/journeys (operator login; snapshots kept fresh
               in the background, starter/report_snapshots.py)
  health       GET  /healthz  Temporal, database, SMTP and worker pollers (a cached summary)
  docs         GET  /docs (Swagger UI), /redoc: from local assets, nothing from a CDN
Shared dependencies (settings, links, the Journeys API, the write key) are in ``deps``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema
from sqlalchemy.exc import DBAPIError
from temporalio.service import RPCError

from core.links import Links
from journeys.config import JourneyConfigError
from settings import Settings
from starter import report_snapshots
from starter.api import Journeys
from starter.client import connect
from starter.http import health, ingest, preview, reports, tracking, unsubscribe
from starter.http.confirm import router as confirm_router
from starter.http.deps import CallInvalid
from starter.http.docs import serve_docs
from starter.http.sms import router as sms_router
from store.db import engine_for, make_session_factory

log = logging.getLogger("starter.http")


@asynccontextmanager
async def _reports_kept_fresh(settings: Settings, journeys: Journeys) -> AsyncIterator[None]:
    """The report snapshots recomputed every REPORT_REFRESH_SECONDS while the app runs
    (starter/report_snapshots.py); nothing when that is 0."""
    every = settings.report_refresh_seconds
    if not every:
        yield
        return
    task = asyncio.create_task(report_snapshots.keep_fresh(journeys.sessions, every=every))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(settings: Settings, journeys: Journeys | None = None) -> FastAPI:
    """The ASGI app. Without ``journeys`` it connects to Temporal and the store at startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if journeys is not None:
            async with _reports_kept_fresh(settings, journeys):
                yield
            return
        engine = engine_for(settings)
        async with (
            Journeys(  # its outbox relay runs as long as the app does
                client=await connect(settings, lazy=True),  # Temporal may be down: kept
                sessions=make_session_factory(engine),
                settings=settings,
            ) as started,
            _reports_kept_fresh(settings, started),
        ):
            app.state.journeys = started
            yield
        await engine.dispose()

    app = FastAPI(
        title="shop-journeys event API",
        version="1",
        description="Segment-compatible ingestion, tracking links and one-click unsubscribe.",
        lifespan=lifespan,
        docs_url=None,  # served by serve_docs from local assets
        redoc_url=None,
    )
    serve_docs(app)
    app.state.settings = settings
    app.state.links = Links(base_url=settings.public_base_url, secret=settings.secret_key)
    app.state.health = health.Health()
    if journeys is not None:
        app.state.journeys = journeys
    for router in (ingest.router, tracking.router, unsubscribe.router, health.router):
        app.include_router(router)
    app.include_router(reports.router)  # the effect report, behind the operator login
    app.include_router(confirm_router)  # the double opt-in's confirmation link
    app.include_router(preview.router)  # a step's email for a customer, behind the same
    app.include_router(sms_router)  # Twilio's webhooks: replies and status callbacks
    _answer_errors(app)
    _document_bodies(app)
    return app


def _document_bodies(app: FastAPI) -> None:
    """The ingestion routes read their bodies themselves (after the write key): their
    schemas and the write key's schemes are added to the OpenAPI components here."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _, defs = models_json_schema(
                [(m, "validation") for m in ingest.REQUEST_BODIES.values()],
                ref_template="#/components/schemas/{model}",
            )
            components = spec.setdefault("components", {})
            components.setdefault("schemas", {}).update(defs.get("$defs", {}))
            components["securitySchemes"] = ingest.WRITE_KEY_SCHEMES
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _answer_errors(app: FastAPI) -> None:
    """Errors answer with what is wrong and what to do; never a stack trace."""

    @app.exception_handler(RequestValidationError)
    async def _bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the reason; leave the input out (it may not even be JSON:
        # NaN, Infinity) so the answer itself can never fail.
        errors = [
            {
                "loc": list(err.get("loc", ())),
                "msg": str(err.get("msg")),
                "type": str(err.get("type")),
            }
            for err in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.exception_handler(CallInvalid)
    async def _invalid(request: Request, exc: CallInvalid) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": exc.errors})

    @app.exception_handler(RPCError)
    async def _temporal_down(request: Request, exc: RPCError) -> JSONResponse:
        log.warning("Temporal call failed: %s", exc)
        return JSONResponse(
            status_code=503,
            content={"detail": "Temporal is unavailable; nothing was recorded, retry"},
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(DBAPIError)
    async def _store_down(request: Request, exc: DBAPIError) -> JSONResponse:
        log.error("store call failed: %s", exc)
        return JSONResponse(
            status_code=503,
            content={"detail": "the store is unavailable; nothing was recorded, retry"},
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(JourneyConfigError)
    async def _bad_config(request: Request, exc: JourneyConfigError) -> JSONResponse:
        log.error("journey configuration: %s", exc)
        return JSONResponse(status_code=503, content={"detail": f"journey configuration: {exc}"})
