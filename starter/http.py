"""HTTP service: Segment-compatible ingestion, tracking links, one-click unsubscribe.

    python -m starter.http        (make run starts it on API_HOST:API_PORT)

Endpoints (README "HTTP API" has a curl example for each):
  POST /v1/identify, /v1/track, /v1/batch   write key as HTTP Basic user or Bearer token
  GET  /t/o/<token>   open pixel          GET /t/c/<token>   click redirect
  GET  /u/<token>     unsubscribe page    POST /u/<token>    RFC 8058 one-click unsubscribe
  GET  /healthz       Temporal, database and SMTP reachability
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import html
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs

import aiosmtplib
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import text
from temporalio.service import RPCError

from core.links import Links
from journeys.config import JourneyConfigError
from observability import configure_logging
from settings import Settings, get_settings
from starter import segment
from starter.api import EmailRequired, EventResult, Journeys, UnknownCustomer
from starter.client import connect
from store.db import make_engine, make_session_factory

log = logging.getLogger("starter.http")

# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}


class CallInvalid(Exception):
    """A call that must not be recorded; ``errors`` are FastAPI-style {loc, msg, type}."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


class Accepted(BaseModel):
    success: bool = True
    duplicate: bool
    action: str


class BatchAccepted(BaseModel):
    success: bool = True
    results: list[Accepted]


def _accepted(result: EventResult) -> Accepted:
    return Accepted(duplicate=result.duplicate, action=result.action)


def _errors(exc: ValidationError, prefix: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [
        {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]


@dataclass
class Prepared:
    """A validated call, ready to run against the Journeys API."""

    customer_id: str
    run: Callable[[Journeys], Awaitable[EventResult]]


def _props(model: type[BaseModel], call: segment.TrackCall, loc: tuple[Any, ...]) -> Any:
    try:
        return model.model_validate(call.properties)
    except ValidationError as exc:
        raise CallInvalid(_errors(exc, (*loc, "properties"))) from exc


def prepare(
    call: segment.IdentifyCall | segment.TrackCall, loc: tuple[Any, ...] = ("body",)
) -> Prepared:
    """Validate everything a call needs before anything is recorded."""
    env = call.envelope()
    cid = call.user_id
    if isinstance(call, segment.IdentifyCall):
        traits = call.traits.model_dump(exclude_none=True)
        return Prepared(
            cid,
            lambda j: j.identify(
                customer_id=cid,
                traits=traits,
                message_id=call.message_id,
                occurred_at=call.timestamp,
            ),
        )
    name = call.event
    if name in ("Product Added", "Product Removed"):
        product = _props(segment.Product, call, loc)
        added = name == "Product Added"
        event = {**env, "line": product.line()}
        return Prepared(cid, lambda j: j.product_changed(event, added=added))
    if name == "Checkout Started":
        checkout = _props(segment.CheckoutStarted, call, loc)
        event = {
            **env,
            "lines": [p.line() for p in checkout.products],
            "currency": checkout.currency,
            "checkout_url": checkout.checkout_url,
        }
        return Prepared(cid, lambda j: j.cart_updated(event))
    if name == "Order Completed":
        order = _props(segment.OrderCompleted, call, loc)
        event = {
            **env,
            "order_id": order.order_id,
            "total": order.total,
            "currency": order.currency,
            "lines": [p.line() for p in order.products],
        }
        return Prepared(cid, lambda j: j.order_placed(event))
    if name == "Unsubscribed":
        unsub = _props(segment.Unsubscribed, call, loc)
        event = {**env, "journey": unsub.journey, "source": "api"}
        return Prepared(cid, lambda j: j.unsubscribe(event))
    if name == "Email Bounced":
        bounce = _props(segment.EmailBounced, call, loc)
        event = {**env, "hard": bounce.bounce_type == "hard", "detail": bounce.reason}
        return Prepared(cid, lambda j: j.email_bounced(event))
    if name == "Subscribed":
        return Prepared(cid, lambda j: j.resubscribe(env))
    if name == "Signed Up":
        return Prepared(cid, lambda j: j.signed_up(env))
    if name == "Order Shipped":
        shipped = _props(segment.OrderShipped, call, loc)
        event = {**env, **shipped.model_dump(exclude_none=True)}
        return Prepared(cid, lambda j: j.order_shipped(event))
    if name == "Product Viewed":
        viewed = _props(segment.Product, call, loc)
        event = {**env, "product": viewed.line()}
        return Prepared(cid, lambda j: j.product_viewed(event))
    if name == "Email Marked as Spam":
        return Prepared(cid, lambda j: j.complaint(env))
    if name in ("Email Opened", "Email Link Clicked"):
        seen = _props(segment.EmailEngagement, call, loc)
        kind = "opened" if name == "Email Opened" else "clicked"
        event = {**env, "kind": kind, "send_key": seen.email_id, "url": seen.link_url}
        return Prepared(cid, lambda j: j.engaged(event))
    event = {**env, "name": name, "properties": call.properties}
    return Prepared(cid, lambda j: j.other_event(event))


def _unknown(loc: tuple[Any, ...], exc: UnknownCustomer) -> CallInvalid:
    if isinstance(exc, EmailRequired):
        return CallInvalid([{"loc": [*loc, "traits", "email"], "msg": str(exc), "type": "missing"}])
    return CallInvalid([{"loc": [*loc, "userId"], "msg": str(exc), "type": "unknown_customer"}])


def the_journeys(request: Request) -> Journeys:
    return request.app.state.journeys  # type: ignore[no-any-return]


JourneysDep = Annotated[Journeys, Depends(the_journeys)]


def create_app(settings: Settings, journeys: Journeys | None = None) -> FastAPI:
    """The ASGI app. Without ``journeys`` it connects to Temporal and the store at startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if journeys is not None:
            app.state.journeys = journeys
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
    if journeys is not None:
        app.state.journeys = journeys
    links = Links(base_url=settings.public_base_url, secret=settings.secret_key)

    def write_key(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        key: str | None = None
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = None
        elif scheme.lower() == "bearer":
            key = value.strip()
        if not key or not hmac.compare_digest(key.encode(), settings.api_write_key.encode()):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong write key: send it as the HTTP Basic user name "
                "(as Segment does) or as 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": 'Basic realm="shop-journeys"'},
            )

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

    async def run_one(j: Journeys, call: segment.IdentifyCall | segment.TrackCall) -> Accepted:
        prepared = prepare(call)
        try:
            return _accepted(await prepared.run(j))
        except UnknownCustomer as exc:
            raise _unknown(("body",), exc) from exc
        except ValidationError as exc:
            raise CallInvalid(_errors(exc, ("body",))) from exc

    @app.post("/v1/identify", dependencies=[Depends(write_key)], tags=["ingestion"])
    async def identify(call: segment.IdentifyCall, j: JourneysDep) -> Accepted:
        """Create or update a customer (traits: email, firstName, lastName, timezone, ...)."""
        return await run_one(j, call)

    @app.post("/v1/track", dependencies=[Depends(write_key)], tags=["ingestion"])
    async def track(call: segment.TrackCall, j: JourneysDep) -> Accepted:
        """Record an event and route it to the journeys it starts or signals."""
        return await run_one(j, call)

    @app.post("/v1/batch", dependencies=[Depends(write_key)], tags=["ingestion"])
    async def batch(call: segment.BatchCall, j: JourneysDep) -> BatchAccepted:
        """Up to API_BATCH_MAX calls. All are validated first (including that each customer
        exists or is identified earlier in the batch); one bad call rejects the whole batch
        with 422 naming it, and nothing is recorded. Then they run in order."""
        if len(call.batch) > settings.api_batch_max:
            raise CallInvalid(
                [
                    {
                        "loc": ["body", "batch"],
                        "msg": f"at most {settings.api_batch_max} calls per batch, "
                        f"got {len(call.batch)}",
                        "type": "too_long",
                    }
                ]
            )
        prepared = [prepare(c, ("body", "batch", i)) for i, c in enumerate(call.batch)]
        known = await j.known_customers({p.customer_id for p in prepared})
        for i, c in enumerate(call.batch):
            if isinstance(c, segment.IdentifyCall) and c.traits.email:
                known.add(c.user_id)
            elif c.user_id not in known:
                raise CallInvalid(
                    [
                        {
                            "loc": ["body", "batch", i, "userId"],
                            "msg": f"unknown customer {c.user_id!r}: identify it (with an "
                            "email) before or earlier in the batch",
                            "type": "unknown_customer",
                        }
                    ]
                )
        results = []
        for i, p in enumerate(prepared):
            try:
                results.append(_accepted(await p.run(j)))
            except UnknownCustomer as exc:
                raise _unknown(("body", "batch", i), exc) from exc
            except ValidationError as exc:
                raise CallInvalid(_errors(exc, ("body", "batch", i))) from exc
        return BatchAccepted(results=results)

    async def _record_quietly(j: Journeys, event: dict[str, Any]) -> None:
        """Tracking must never break the customer's click or mail client."""
        try:
            await j.engaged(event)
        except (UnknownCustomer, RPCError, ValidationError, OSError) as exc:
            log.warning("tracking event not recorded: %s", exc)

    @app.get("/t/o/{token}", tags=["tracking"], response_class=Response)
    async def open_pixel(token: str, j: JourneysDep) -> Response:
        """1x1 GIF; records "Email Opened" against the send and tells its journey."""
        payload = links.read(token, "open")
        if payload is None:
            raise HTTPException(status_code=404, detail="unknown link")
        await _record_quietly(
            j,
            {
                "customer_id": payload["c"],
                "kind": "opened",
                "send_key": payload["k"],
                "message_id": f"open:{uuid.uuid4().hex}",
            },
        )
        return Response(content=PIXEL, media_type="image/gif", headers=NO_CACHE)

    @app.get("/t/c/{token}", tags=["tracking"], response_class=RedirectResponse)
    async def click(token: str, j: JourneysDep) -> RedirectResponse:
        """302 to the link that was in the email (and only to it); records the click."""
        payload = links.read(token, "click")
        if payload is None or not str(payload.get("u", "")).startswith(("https://", "http://")):
            raise HTTPException(status_code=404, detail="unknown link")
        await _record_quietly(
            j,
            {
                "customer_id": payload["c"],
                "kind": "clicked",
                "send_key": payload["k"],
                "url": payload["u"],
                "message_id": f"click:{uuid.uuid4().hex}",
            },
        )
        return RedirectResponse(payload["u"], status_code=302, headers=NO_CACHE)

    @app.get("/s/{token}", tags=["unsubscribe"], response_class=HTMLResponse)
    async def stay(token: str, j: JourneysDep) -> HTMLResponse:
        """ "Keep writing to me" from a win-back last call: one click, no login."""
        payload = links.read(token, "stay")
        if payload is None:
            raise HTTPException(status_code=404, detail="unknown link")
        try:
            await j.stay(customer_id=payload["c"], send_key=payload["k"])
        except UnknownCustomer as exc:
            raise HTTPException(status_code=404, detail="unknown link") from exc
        return HTMLResponse(
            _page("Thank you", "<p>Glad to hear it: you will keep getting our emails.</p>"),
            headers=NO_CACHE,
        )

    def _unsubscribe_payload(token: str) -> dict[str, Any]:
        payload = links.read(token, "unsubscribe")
        if payload is None:
            raise HTTPException(status_code=404, detail="unknown unsubscribe link")
        return payload

    @app.get("/u/{token}", tags=["unsubscribe"], response_class=HTMLResponse)
    async def unsubscribe_page(token: str) -> HTMLResponse:
        """A confirmation page with the choice: all marketing email, or this kind only."""
        payload = _unsubscribe_payload(token)
        journey = html.escape(str(payload.get("j", "")).replace("_", " "))
        return HTMLResponse(
            _page(
                "Unsubscribe",
                f"""<form method="post">
<p><label><input type="radio" name="scope" value="all" checked>
 No more marketing email from us</label></p>
<p><label><input type="radio" name="scope" value="journey">
 Only stop {journey} emails</label></p>
<p><button type="submit">Unsubscribe</button></p>
</form>""",
            ),
            headers=NO_CACHE,
        )

    @app.post("/u/{token}", tags=["unsubscribe"], response_class=HTMLResponse)
    async def unsubscribe(token: str, request: Request, j: JourneysDep) -> HTMLResponse:
        """RFC 8058 one-click (body ``List-Unsubscribe=One-Click``), or the page's form.
        No cookie, no login; takes effect at once, running journeys included."""
        payload = _unsubscribe_payload(token)
        only_journey = _form_scope(await request.body(), request.headers.get("content-type"))
        journey = payload.get("j") if only_journey else None
        try:
            await j.unsubscribe(
                {
                    "customer_id": payload["c"],
                    "journey": journey,
                    "source": "one-click" if not only_journey else "page",
                    "message_id": f"unsubscribe:{uuid.uuid4().hex}",
                }
            )
        except UnknownCustomer as exc:
            raise HTTPException(status_code=404, detail="unknown unsubscribe link") from exc
        what = f"{str(journey).replace('_', ' ')} emails" if journey else "marketing email"
        return HTMLResponse(
            _page("Unsubscribed", f"<p>Done: you will get no more {html.escape(what)}.</p>"),
            headers=NO_CACHE,
        )

    @app.get("/healthz", tags=["operations"])
    async def healthz(j: JourneysDep) -> JSONResponse:
        """Reachability of Temporal, the database and the SMTP server; 503 if one is down."""
        checks = {
            "temporal": _check(j.client.service_client.check_health()),
            "database": _check(_db_ok(j)),
            "smtp": _check(_smtp_ok(settings)),
        }
        results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
        healthy = all(v == "ok" for v in results.values())
        return JSONResponse(status_code=200 if healthy else 503, content=results)

    return app


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


_SCOPE_MULTIPART = re.compile(rb'name="scope"\r?\n(?:[^\r\n]+\r?\n)*\r?\njourney')


def _form_scope(body: bytes, content_type: str | None) -> bool:
    """True when the form asks to leave this journey only; one-click means everything."""
    if content_type and content_type.startswith("multipart/form-data"):
        return bool(_SCOPE_MULTIPART.search(body))
    form = parse_qs(body.decode("utf-8", "replace"))
    return form.get("scope") == ["journey"]


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"></head>
<body style="font-family:Arial,Helvetica,sans-serif;max-width:520px;margin:40px auto">
<h1>{title}</h1>
{body}
</body></html>"""


def main() -> None:
    import uvicorn

    settings = get_settings()
    configure_logging(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
        log_config=None,  # our handlers (LOG_FORMAT), not uvicorn's own
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
