"""Twilio's webhooks (docs/decisions/0015-sms.md), both form-encoded and signed:

  POST /v1/sms/inbound   a reply to our number: STOP, UNSUBSCRIBE, T, TD, 退订 ... opt the
                         number out of every text at once (running journeys drop a held
                         text; emails go on); START opts it back in. Answers empty TwiML.
  POST /v1/sms/status    a status callback: ``MessageStatus`` delivered / undelivered /
                         failed with ``ErrorCode`` is recorded on the text's send log row; a
                         permanent error (21211 invalid, 21614 / 30006 no mobile, 21610
                         opted out at the carrier, ...) suppresses texts to the number.

``X-Twilio-Signature`` is checked as Twilio specifies (core.sms.twilio_signature: the URL
Twilio called, ``PUBLIC_BASE_URL`` + path + query, then the POST parameters sorted by
name; HMAC-SHA1 with the auth token; base64). A missing or wrong signature: ``403`` and
nothing is recorded.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from core.sms import PERMANENT_ERRORS, e164, reply_keyword, valid_twilio_signature
from settings import Settings
from starter.api import Journeys
from starter.http.deps import JourneysDep, SettingsDep
from starter.ingest import sms as replies
from starter.ingest.service import in_transaction
from store import sms as sms_store

log = logging.getLogger("starter.http")
router = APIRouter(prefix="/v1/sms", tags=["sms"])
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
DELIVERY_STATUSES = frozenset({"delivered", "undelivered", "failed"})
MAX_FORM = 64 * 1024


async def signed_form(request: Request, settings: Settings) -> dict[str, str]:
    """The POST parameters, once the signature says Twilio sent them; else 403."""
    raw = await request.body()
    if len(raw) > MAX_FORM:
        raise HTTPException(status_code=413, detail="form over 64 KB")
    form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
    url = settings.public_base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += f"?{request.url.query}"
    _, token = settings.twilio_credentials
    signature = request.headers.get("X-Twilio-Signature")
    if not valid_twilio_signature(url, form, token, signature):
        log.warning("SMS webhook %s: X-Twilio-Signature missing or wrong", request.url.path)
        raise HTTPException(status_code=403, detail="X-Twilio-Signature does not match")
    return form


@router.post("/inbound", response_class=Response)
async def inbound(request: Request, settings: SettingsDep, j: JourneysDep) -> Response:
    """A reply: a keyword opts the number out (or back in); anything else is ignored."""
    form = await signed_form(request, settings)
    body = form.get("Body", "")
    meaning = reply_keyword(body)
    try:
        phone = e164(form.get("From", ""))
    except ValueError:
        phone = None
    if meaning is not None and phone is not None:
        await replies.replied(
            j.ingest,
            phone=phone,
            keyword=body.strip()[:32],
            opt_out=meaning == "opt_out",
            reply_id=form.get("MessageSid") or None,
        )
    return Response(content=EMPTY_TWIML, media_type="text/xml")


@router.post("/status", status_code=204, response_class=Response)
async def status(request: Request, settings: SettingsDep, j: JourneysDep) -> Response:
    """A delivery receipt of one of our texts."""
    form = await signed_form(request, settings)
    sid, state = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not sid or state not in DELIVERY_STATUSES:
        return Response(status_code=204)  # queued, sent, ...: nothing to record
    code = form.get("ErrorCode") or None

    async def record(s: AsyncSession) -> None:
        row = await sms_store.record_delivery(s, message_id=sid, status=state, error=code)
        if row is None:
            log.info("status callback for an unknown text %s", sid)
            return
        if state != "delivered" and code is not None and code in PERMANENT_ERRORS and row.recipient:
            await sms_store.suppress_sms(
                s,
                phone=row.recipient,
                reason=PERMANENT_ERRORS[code],
                source="status_callback",
                customer_id=row.customer_id,
                detail=f"{state} {code} ({sid})",
            )

    await in_transaction(j.sessions, record)
    return Response(status_code=204)


SHORT_TOKEN_MAX = 16  # store.models.ShortLink.token; a signed click token is far longer


async def short_click(j: Journeys, token: str) -> dict[str, str] | None:
    """The click payload (customer, send key, target) of a text's short link
    (``/t/c/<token>``, made by activities/sms/compose.py), or None for no such token."""

    async def find(s: AsyncSession) -> dict[str, str] | None:
        link = await sms_store.follow_short_link(s, token=token)
        if link is None:
            return None
        return {"c": link.customer_id, "k": link.send_key, "u": link.url}

    return await in_transaction(j.sessions, find)
