"""Tracking links: GET /t/o/<token> (open pixel), GET /t/c/<token> (click redirect)."""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from temporalio.service import RPCError

from starter.api import Journeys
from starter.http.deps import JourneysDep, LinksDep
from starter.http.pages import NO_CACHE
from starter.ingest.service import UnknownCustomer

log = logging.getLogger("starter.http")
router = APIRouter(prefix="/t", tags=["tracking"])

# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


@router.get("/o/{token}", response_class=Response)
async def open_pixel(token: str, j: JourneysDep, links: LinksDep) -> Response:
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


@router.get("/c/{token}", response_class=RedirectResponse)
async def click(token: str, j: JourneysDep, links: LinksDep) -> RedirectResponse:
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


async def _record_quietly(j: Journeys, event: dict[str, Any]) -> None:
    """Tracking must never break the customer's click or mail client."""
    try:
        await j.engaged(event)
    except (UnknownCustomer, RPCError, ValidationError, OSError) as exc:
        log.warning("tracking event not recorded: %s", exc)
