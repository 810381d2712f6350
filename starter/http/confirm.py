"""The double opt-in's confirmation link: GET /confirm/<token> (a page with the consent text
and one button: nothing happens on GET, so a link scanner that fetches every URL of an
email confirms nothing), POST /confirm/<token> (the button: the consent is recorded with
the time, the IP address and the user agent of this request, and the marketing that waited
starts). No cookie, no login; the link works for ``CONFIRM_DAYS`` after the email, then
answers 410 (starter/ingest/opt_in.py)."""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from settings import Settings
from starter.http.deps import JourneysDep, SettingsDep
from starter.http.pages import NO_CACHE, page
from starter.ingest import opt_in
from starter.ingest.service import UnknownCustomer

router = APIRouter(tags=["consent"])


@router.get("/confirm/{token}", response_class=HTMLResponse)
async def confirm_page(token: str, settings: SettingsDep) -> HTMLResponse:
    """The page the confirmation email links to: the text agreed to and one button."""
    payload = _payload(settings, token)
    if isinstance(payload, HTMLResponse):
        return payload
    return HTMLResponse(
        page(
            "Confirm your subscription",
            f"""<form method="post">
<p>{html.escape(settings.consent_text)}</p>
<p><button type="submit">Yes, subscribe me</button></p>
</form>""",
        ),
        headers=NO_CACHE,
    )


@router.post("/confirm/{token}", response_class=HTMLResponse)
async def confirm(
    token: str, request: Request, j: JourneysDep, settings: SettingsDep
) -> HTMLResponse:
    """The page's button: records the confirmation (time, IP address as this API sees the
    client, user agent) and starts the marketing that waited for it. 404 for an unknown
    link or customer, 410 for an expired one."""
    payload = _payload(settings, token)
    if isinstance(payload, HTMLResponse):
        return payload
    try:
        await opt_in.confirm(
            j.ingest,
            customer_id=str(payload["c"]),
            token=token,
            ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
        )
    except UnknownCustomer as exc:
        raise HTTPException(status_code=404, detail="unknown confirmation link") from exc
    return HTMLResponse(
        page("Thank you", "<p>You are subscribed: our emails are on their way.</p>"),
        headers=NO_CACHE,
    )


def _payload(settings: Settings, token: str) -> dict[str, Any] | HTMLResponse:
    """The payload of a good token; a 410 page for an expired one; 404 for the rest."""
    payload, expired = opt_in.read_confirm_token(settings, token)
    if payload is not None:
        return payload
    if expired:
        return HTMLResponse(
            page(
                "This link has expired",
                "<p>This confirmation link works no longer. Nothing was changed. Sign up "
                "again to get a new one.</p>",
            ),
            status_code=410,
            headers=NO_CACHE,
        )
    raise HTTPException(status_code=404, detail="unknown confirmation link")
