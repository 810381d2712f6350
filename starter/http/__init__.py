"""HTTP service: Segment-compatible ingestion, tracking links, one-click unsubscribe.

    python -m starter.http        (make run starts it on API_HOST:API_PORT)

Endpoints (README "HTTP API" has a curl example for each), one router module each:
  ingest       POST /v1/identify, /v1/track, /v1/batch   write key as Basic user or Bearer
  tracking     GET  /t/o/<token> open pixel              GET /t/c/<token> click redirect
  unsubscribe  GET  /u/<token> page, POST /u/<token> RFC 8058 one-click; GET /s/<token> stay
  health       GET  /healthz  Temporal, database and SMTP reachability
Shared dependencies (settings, links, the Journeys API, the write key) are in ``deps``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from temporalio.service import RPCError

from core.links import Links
from journeys.config import JourneyConfigError
from settings import Settings
from starter.api import Journeys
from starter.client import connect
from starter.http import health, ingest, tracking, unsubscribe
from starter.http.segment import CallInvalid
from store.db import make_engine, make_session_factory

log = logging.getLogger("starter.http")


def create_app(settings: Settings, journeys: Journeys | None = None) -> FastAPI:
    """The ASGI app. Without ``journeys`` it connects to Temporal and the store at startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if journeys is not None:
            yield
            return
        engine = make_engine(settings.database_url)
        app.state.journeys = Journeys(
            client=await connect(settings),
            sessions=make_session_factory(engine),
            settings=settings,
        )
        yield
        await engine.dispose()

    app = FastAPI(
        title="shop-journeys event API",
        version="1",
        description="Segment-compatible ingestion, tracking links and one-click unsubscribe.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.links = Links(base_url=settings.public_base_url, secret=settings.secret_key)
    if journeys is not None:
        app.state.journeys = journeys
    for router in (ingest.router, tracking.router, unsubscribe.router, health.router):
        app.include_router(router)
    _answer_errors(app)
    return app


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
            content={"detail": f"Temporal is unavailable ({exc}); nothing was recorded, retry"},
        )

    @app.exception_handler(JourneyConfigError)
    async def _bad_config(request: Request, exc: JourneyConfigError) -> JSONResponse:
        log.error("journey configuration: %s", exc)
        return JSONResponse(status_code=503, content={"detail": f"journey configuration: {exc}"})
