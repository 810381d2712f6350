""" "Report this email" (issue 14 item 3), end to end through the HTTP API served for real:
the link in every marketing email's footer shows a page (a GET changes nothing: scanners
fetch every link), its button records a complaint that suppresses the address at once and
ends the running journeys; no email follows, and a re-subscribe does not lift it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from core import tokens
from starter import ops
from store.models import Suppression, SuppressionReason
from testkit.data import TEE, abandon_cart, add_customer, email_for
from testkit.engagement import PERSON, SCANNER, live
from testkit.mail import parts, tracked_links, wait_for_mail
from testkit.stack import SECRET, WRITE_KEY
from testkit.waiting import PATIENCE

BEARER = {"Authorization": f"Bearer {WRITE_KEY}"}


async def _reasons(stack, cid: str) -> list[SuppressionReason]:
    async with stack.sessions() as s:
        rows = await s.scalars(
            select(SuppressionReason).where(SuppressionReason.email == email_for(cid))
        )
        return list(rows)


async def test_report_this_email_suppresses_at_once_and_a_resubscribe_does_not_lift_it(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    (mail,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
    text, html = parts(mail)
    report = next(line.split(": ", 1)[1] for line in text.splitlines() if "/r/" in line)
    assert report.startswith("https://shop.test/r/")
    assert f'href="{report}"' in html and "Report this email" in html  # in the footer
    for link in tracked_links(html):  # not through the click tracker: it is no engagement
        payload = tokens.verify(link.rsplit("/", 1)[1], secret=SECRET, purpose="click")
        assert payload is not None and "/r/" not in str(payload["u"])
    path = report.removeprefix("https://shop.test")

    async with live(stack) as client:
        page = await client.get(path, headers=SCANNER)  # a link scanner: a page, nothing else
        assert page.status_code == 200
        assert '<form method="post">' in page.text and "Report this email" in page.text
        assert await _reasons(stack, cid) == []

        done = await client.post(path, headers=PERSON)
        assert done.status_code == 200 and "no more email from us" in done.text
        assert (await client.post(path, headers=PERSON)).status_code == 200  # twice: one
        assert (await client.post(path[:-3] + "xyz")).status_code == 404  # altered token

        (reason,) = await _reasons(stack, cid)
        assert (reason.reason, reason.source) == ("complaint", "report link")
        result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
        assert result.outcome == "complaint"  # the running journey ended at once

        # No more email: a new cart's journey sends nothing.
        again = await abandon_cart(stack, cid, TEE)
        await stack.fast_forward(again, timedelta(days=7, hours=1))
        assert (await asyncio.wait_for(again.result(), timeout=PATIENCE)).sent == []
        assert len(stack.catcher.to(email_for(cid))) == 1

        # An explicit re-subscribe lifts an unsubscribe, never a complaint.
        subscribed = await client.post(
            "/v1/track",
            json={"userId": cid, "event": "Subscribed", "messageId": f"resub-{cid}"},
            headers=BEARER,
        )
        assert subscribed.status_code == 200, subscribed.text
    async with stack.sessions() as s:
        suppression = await s.get(Suppression, email_for(cid))
    assert suppression is not None and suppression.reason == "complaint"
    assert [r.reason for r in await _reasons(stack, cid)] == ["complaint"]
    x = await ops.explain(stack.sessions, stack.client, cid)
    assert x.suppression is not None and "[report link]" in x.suppression
