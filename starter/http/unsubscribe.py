"""What a recipient clicks: GET/POST /u/<token> (unsubscribe page, RFC 8058 one-click),
GET/POST /s/<token> ("keep writing to me" from a win-back last call: a page, then its
button; the link expires), GET/POST /r/<token> ("report this email": a page, then its
button records a complaint). No cookie, no login. A GET never changes anything: link
scanners fetch every URL of an email."""

from __future__ import annotations

import hashlib
import html
import re
import uuid
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from core.links import Links
from starter.http.deps import JourneysDep, LinksDep
from starter.http.pages import NO_CACHE, page
from starter.ingest.service import UnknownCustomer

router = APIRouter(tags=["unsubscribe"])


@router.get("/s/{token}", response_class=HTMLResponse)
async def stay_page(token: str, links: LinksDep) -> HTMLResponse:
    """ "Keep writing to me" from a win-back last call: a page with one button. Nothing
    happens on GET, so a link scanner that fetches every URL of an email lifts no sunset."""
    payload = _stay_payload(links, token)
    if isinstance(payload, HTMLResponse):
        return payload
    return HTMLResponse(
        page(
            "Keep getting our emails?",
            """<form method="post">
<p>Press the button and we will keep writing to you.</p>
<p><button type="submit">Keep writing to me</button></p>
</form>""",
        ),
        headers=NO_CACHE,
    )


@router.post("/s/{token}", response_class=HTMLResponse)
async def stay(token: str, j: JourneysDep, links: LinksDep) -> HTMLResponse:
    """The page's button: ends the countdown to sunset, lifts a sunset. No login; the link
    works for ``STAY_DAYS`` after the email (core/links.py), then answers 410."""
    payload = _stay_payload(links, token)
    if isinstance(payload, HTMLResponse):
        return payload
    try:
        await j.stay(customer_id=payload["c"], send_key=payload["k"])
    except UnknownCustomer as exc:
        raise HTTPException(status_code=404, detail="unknown link") from exc
    return HTMLResponse(
        page("Thank you", "<p>Glad to hear it: you will keep getting our emails.</p>"),
        headers=NO_CACHE,
    )


def _stay_payload(links: Links, token: str) -> dict[str, Any] | HTMLResponse:
    """The payload of a good stay token; a 410 page for an expired one; 404 for the rest."""
    if (payload := links.read(token, "stay")) is not None:
        return payload
    if links.expired(token, "stay"):
        return HTMLResponse(
            page(
                "This link has expired",
                "<p>This link was in an email sent a while ago and works no longer. "
                "Nothing was changed. If you want to keep getting our emails, use the "
                "link in our most recent email, or tell us in your account settings.</p>",
            ),
            status_code=410,
            headers=NO_CACHE,
        )
    raise HTTPException(status_code=404, detail="unknown link")


@router.get("/r/{token}", response_class=HTMLResponse)
async def report_page(token: str, links: LinksDep) -> HTMLResponse:
    """ "Report this email": a page with one button. Nothing happens on GET."""
    _report_payload(links, token)
    return HTMLResponse(
        page(
            "Report this email",
            """<form method="post">
<p>Did you get this email without asking for it, or is it not what you signed up for?
Report it and we will not email you again.</p>
<p><button type="submit">Report this email</button></p>
</form>""",
        ),
        headers=NO_CACHE,
    )


@router.post("/r/{token}", response_class=HTMLResponse)
async def report(token: str, j: JourneysDep, links: LinksDep) -> HTMLResponse:
    """The page's button: a complaint (suppression reason ``complaint``, source ``report
    link``), in force at once; running journeys end. A re-subscribe never lifts it (as
    a provider's complaint). The same email reported twice is one complaint."""
    payload = _report_payload(links, token)
    key = str(payload["k"])
    try:
        await j.complaint(
            {
                "customer_id": payload["c"],
                "source": "report link",
                "detail": f"reported with the link in the email {key}",
                "message_id": f"report:{key if len(key) <= 190 else _digest(key)}",
            }
        )
    except UnknownCustomer as exc:
        raise HTTPException(status_code=404, detail="unknown link") from exc
    return HTMLResponse(
        page(
            "Thank you for telling us",
            "<p>We are sorry. You will get no more email from us.</p>",
        ),
        headers=NO_CACHE,
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _report_payload(links: Links, token: str) -> dict[str, Any]:
    payload = links.read(token, "report")
    if payload is None:
        raise HTTPException(status_code=404, detail="unknown link")
    return payload


@router.get("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, links: LinksDep) -> HTMLResponse:
    """A confirmation page with the choice: all marketing email, or this kind only."""
    payload = _unsubscribe_payload(links, token)
    journey = html.escape(str(payload.get("j", "")).replace("_", " "))
    return HTMLResponse(
        page(
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


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe(
    token: str, request: Request, j: JourneysDep, links: LinksDep
) -> HTMLResponse:
    """RFC 8058 one-click (body ``List-Unsubscribe=One-Click``), or the page's form.
    No cookie, no login; takes effect at once, running journeys included."""
    payload = _unsubscribe_payload(links, token)
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
        page("Unsubscribed", f"<p>Done: you will get no more {html.escape(what)}.</p>"),
        headers=NO_CACHE,
    )


def _unsubscribe_payload(links: Links, token: str) -> dict[str, Any]:
    payload = links.read(token, "unsubscribe")
    if payload is None:
        raise HTTPException(status_code=404, detail="unknown unsubscribe link")
    return payload


_SCOPE_MULTIPART = re.compile(rb'name="scope"\r?\n(?:[^\r\n]+\r?\n)*\r?\njourney')


def _form_scope(body: bytes, content_type: str | None) -> bool:
    """True when the form asks to leave this journey only; one-click means everything."""
    if content_type and content_type.startswith("multipart/form-data"):
        return bool(_SCOPE_MULTIPART.search(body))
    form = parse_qs(body.decode("utf-8", "replace"))
    return form.get("scope") == ["journey"]
