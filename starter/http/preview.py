"""A journey step's email for one customer, as a page, behind the operator login
(ADMIN_USER / ADMIN_PASSWORD, HTTP Basic, as the report pages; never the write key):

  GET /preview/{journey}/{step}?customer=ID[&order_id=..][&product_sku=..][&picks=..]
      [&tracking_url=..]

shows the subject, what the send gate says now, the HTML part in a sandboxed frame (no
scripts, no forms), the text part and the headers: the same preview as ``python -m starter
preview`` (activities/preview.py: links untracked, unsubscribe inert, no coupon issued).
404 names the valid journeys or steps for an unknown one (or says the customer is unknown);
422 names a bad query value.
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse

from activities.preview import CONTEXT_KEYS, Preview, PreviewBroken, PreviewError, PreviewNotFound
from starter.http.deps import JourneysDep, SettingsDep
from starter.http.reports import operator
from starter.preview import step_previews

# The page itself runs nothing and loads nothing but the email's images; the email's HTML
# (in the frame, which inherits this policy) gets no scripts either.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "frame-src https: http:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:1.5rem auto;max-width:64rem;color:#222}
h1{font-size:1.3rem;margin:0 0 .3rem} h2{font-size:1.05rem;margin:1.4rem 0 .4rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.6rem 0}
dt{color:#666} dd{margin:0} .note{color:#666;font-size:.9rem}
iframe{width:100%;height:70vh;border:1px solid #ccc;background:#fff}
pre{background:#f6f6f6;padding:.8rem;overflow:auto;white-space:pre-wrap;font-size:.85rem}
"""

router = APIRouter(tags=["preview"], dependencies=[Depends(operator)])
Text = Annotated[str | None, Query(max_length=2000)]


@router.get("/preview/{journey}/{step}", response_class=HTMLResponse)
async def preview_page(
    journey: str,
    step: str,
    journeys: JourneysDep,
    settings: SettingsDep,
    customer: Annotated[str, Query(min_length=1, max_length=64, description="customer id")],
    order_id: Text = None,
    product_sku: Text = None,
    picks: Text = None,
    tracking_url: Text = None,
) -> HTMLResponse:
    given = {"order_id": order_id, "product_sku": product_sku, "picks": picks}
    given["tracking_url"] = tracking_url
    overrides = {k: v for k, v in given.items() if v is not None and k in CONTEXT_KEYS}
    try:
        found = await step_previews(settings, journeys.sessions).preview(
            journey, step, customer, overrides=overrides
        )
    except PreviewNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except PreviewBroken as exc:
        raise HTTPException(503, f"journey configuration: {exc}") from exc
    except PreviewError as exc:
        raise HTTPException(422, str(exc)) from exc
    return HTMLResponse(page(found), headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


def page(found: Preview) -> str:
    e = html.escape
    rows = (
        ("subject", found.rendered.subject),
        ("to", str(found.message["To"])),
        ("template", found.template),
        ("A/B variant", found.variant or "no test"),
        ("step context", found.context_said),
        ("the send gate now", found.gate_says),
    )
    facts = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>{e(found.journey)}/{e(found.step)} for {e(found.customer_id)}: preview</title>
<style>{STYLE}</style></head><body>
<h1>{e(found.journey)} / {e(found.step)} for {e(found.customer_id)}</h1>
<dl>{facts}</dl>
<p class="note">As the send path renders it now, except: links are not tracked (no open pixel,
no click redirect), its links to this service (unsubscribe, ...) are inert, a coupon shows as
<code>PREFIX-PREVIEW</code> and is not issued. Nothing was recorded.</p>
<h2>HTML part</h2>
<iframe title="HTML part" sandbox="" referrerpolicy="no-referrer"
 srcdoc="{e(found.rendered.html, quote=True)}"></iframe>
<h2>Text part</h2>
<pre>{e(found.rendered.text)}</pre>
<h2>Headers</h2>
<pre>{e(found.headers())}</pre>
</body></html>
"""
