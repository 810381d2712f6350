"""Tracking links: GET /t/o/<token> (open pixel), GET /t/c/<token> (click redirect).

A genuine link always answers (the pixel, the 302), whatever happens to recording it: a
store or Temporal that fails is logged, one that is slow is left to finish in the
background after ``RECORD_WAIT`` seconds. Only a forged or altered token gets 404.

Every fetch, GET or HEAD, is recorded with what a classifier needs (method, user agent,
the client's address): a mail scanner or image proxy gets the same pixel and the same
redirect as a person, and its fetch is kept as a machine's, never counted as a person's
(starter/ingest/engagement.py, core/engagement.py).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from starter.api import Journeys
from starter.http.deps import JourneysDep, LinksDep
from starter.http.pages import NO_CACHE
from starter.http.sms import SHORT_TOKEN_MAX, short_click

log = logging.getLogger("starter.http")
router = APIRouter(prefix="/t", tags=["tracking"])

RECORD_WAIT = 3.0  # seconds a recipient waits at most for their open or click to be recorded
_pending: set[asyncio.Task[None]] = set()  # recordings that outlived RECORD_WAIT
# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


@router.get("/o/{token}", response_class=Response)
@router.head("/o/{token}", response_class=Response, include_in_schema=False)
async def open_pixel(token: str, request: Request, j: JourneysDep, links: LinksDep) -> Response:
    """1x1 GIF; records "Email Opened" against the send, classified (a person's is told
    to its journey)."""
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
            **_fetch(request),
        },
    )
    return Response(content=PIXEL, media_type="image/gif", headers=NO_CACHE)


@router.get("/c/{token}", response_class=RedirectResponse)
@router.head("/c/{token}", response_class=RedirectResponse, include_in_schema=False)
async def click(token: str, request: Request, j: JourneysDep, links: LinksDep) -> RedirectResponse:
    """302 to the link that was in the email (and only to it), for people and machines
    alike; records the click, classified (a person's is told to its journey)."""
    payload = links.read(token, "click")
    if payload is None and len(token) <= SHORT_TOKEN_MAX:  # a text's short link
        payload = await short_click(j, token)
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
            **_fetch(request),
        },
    )
    return RedirectResponse(payload["u"], status_code=302, headers=NO_CACHE)


def _fetch(request: Request) -> dict[str, str | None]:
    """What the classifier reads of the request: method, user agent, client address (the
    peer as the server sees it; behind a proxy run uvicorn with --proxy-headers)."""
    return {
        "method": request.method,
        "user_agent": (request.headers.get("user-agent") or "")[:2000] or None,
        "remote_addr": request.client.host[:64] if request.client else None,
    }


async def _record_quietly(j: Journeys, event: dict[str, Any]) -> None:
    """Tracking must never break the customer's click or mail client."""
    task = asyncio.create_task(_record(j, event))
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=RECORD_WAIT)
    except TimeoutError:
        log.warning("tracking event still being recorded after %s s; answering", RECORD_WAIT)
        _pending.add(task)  # keep a reference until it ends
        task.add_done_callback(_pending.discard)


async def _record(j: Journeys, event: dict[str, Any]) -> None:
    try:
        await j.engaged(event)
    except Exception:  # whatever failed, the recipient gets their pixel or redirect
        log.exception("tracking event not recorded (%s of %s)", event["kind"], event["send_key"])
