"""Only a person's opens and clicks change a journey's path (issue 14 item 2), through the
HTTP API served for real: a mail scanner fetching every link at delivery, HEAD requests and
Apple Mail Privacy Protection's open are recorded as a machine's, redirected like anyone,
and change nothing; a person's click still does; ``explain`` says which were discounted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from core import tokens
from starter import ops
from starter.__main__ import print_explanation
from store.models import Event, SendLog
from testkit.data import MUG, TEE, abandon_cart, add_customer, email_for
from testkit.engagement import APPLE_MPP, PERSON, SCANNER, delivered, live, read_later
from testkit.mail import journey_mails, parts, steps_of, tracked_links, wait_for_mail
from testkit.stack import SECRET, Stack
from testkit.waiting import PATIENCE
from tests.test_welcome_series import sign_up, welcome_mails
from workflows.cart_recovery import CartRecovery
from workflows.welcome_series import WelcomeSeries

# Lines with product pages: the reminder has three links (the checkout, two products).
TEE_PAGE = {**TEE, "url": "https://shop.test/p/tee-1"}
MUG_PAGE = {**MUG, "url": "https://shop.test/p/mug-7"}


async def engagement(stack: Stack, customer_id: str) -> list[Event]:
    async with stack.sessions() as s:
        rows = await s.scalars(
            select(Event)
            .where(
                Event.customer_id == customer_id,
                Event.name.in_(("Email Opened", "Email Link Clicked")),
            )
            .order_by(Event.id)
        )
        return list(rows)


def target(link: str) -> str:
    """Where a tracked link leads (the URL signed into its token)."""
    payload = tokens.verify(link.rsplit("/", 1)[1], secret=SECRET, purpose="click")
    assert payload is not None
    return str(payload["u"])


async def scan(client: httpx.AsyncClient, html: str) -> None:
    """What reaches us at delivery: a browser's prefetch of the first link, a HEAD of the
    second, a security gateway's GET of every link, HEADs of all, Apple's pixel fetch. Every
    fetch is answered as a person's would be."""
    clicks, (pixel,) = tracked_links(html), tracked_links(html, "o")
    assert len(clicks) >= 3, clicks
    first = await client.get(clicks[0], headers=PERSON)
    second = await client.head(clicks[1], headers=PERSON)
    for answer, link in ((first, clicks[0]), (second, clicks[1])):
        assert answer.status_code == 302 and answer.headers["location"] == target(link)
    for link in clicks:
        answer = await client.get(link, headers=SCANNER)
        assert answer.status_code == 302 and answer.headers["location"] == target(link)
        assert (await client.head(link, headers=SCANNER)).status_code == 302
    opened = await client.get(pixel, headers=APPLE_MPP)
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
    assert (await client.head(pixel, headers=PERSON)).status_code == 200


async def test_a_scanner_at_delivery_does_not_skip_the_cart_reminders(stack, journeys_dir):
    journeys_dir(cart_recovery={"skip_reminders_after_click": True})
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE_PAGE, MUG_PAGE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    (mail,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
    _, html = parts(mail)
    await delivered(stack, cid)
    async with live(stack) as client:
        await scan(client, html)

    rows = await engagement(stack, cid)
    assert rows and all(e.engagement_class == "machine" for e in rows)
    clicks = [e for e in rows if e.name == "Email Link Clicked"]
    assert [e.engagement_reason for e in clicks[:2]] == ["prefetch_at_delivery", "head_request"]
    assert {e.engagement_reason for e in clicks[2:]} == {"scanner_ua"}
    (opened,) = [e for e in rows if e.name == "Email Opened"]
    assert opened.engagement_reason == "image_proxy"
    assert opened.repeats == 1  # the HEAD of the pixel: counted on it
    assert (await handle.query(CartRecovery.state)).engagements == []

    await stack.fast_forward(handle, timedelta(days=7))
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.sent == ["reminder_1", "reminder_2", "reminder_3", "reminder_4", "discount"]


async def test_a_person_clicking_after_the_scanner_still_skips_the_reminders(
    stack, journeys_dir, capsys
):
    journeys_dir(cart_recovery={"skip_reminders_after_click": True})
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE_PAGE, MUG_PAGE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    (mail,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
    _, html = parts(mail)
    await delivered(stack, cid)
    async with live(stack) as client:
        await scan(client, html)
        await read_later(stack, cid)  # the person reads it an hour after delivery
        person = await client.get(tracked_links(html)[0], headers=PERSON)
        assert person.status_code == 302

    state = await handle.query(CartRecovery.state)
    assert [e.kind for e in state.engagements] == ["clicked"]
    await stack.fast_forward(handle, timedelta(days=7))
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.sent == ["reminder_1", "discount"]

    x = await ops.explain(stack.sessions, stack.client, cid)
    counted = [e for e in x.engagement if e not in x.discounted]
    assert [(e.name, e.engagement_reason) for e in counted] == [("Email Link Clicked", "person")]
    assert len(x.discounted) == len(x.engagement) - 1
    print_explanation(x)
    out = capsys.readouterr().out
    assert "DISCOUNTED, a machine's: scanner_ua (user agent of Barracuda)" in out
    assert "DISCOUNTED, a machine's: image_proxy (Apple Mail Privacy Protection" in out
    assert "DISCOUNTED, a machine's: head_request (HEAD request, not a person's GET)" in out
    assert "counted (person)" in out


async def test_every_link_at_once_in_a_browser_is_a_machine_too(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE_PAGE, MUG_PAGE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    (mail,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
    _, html = parts(mail)
    await delivered(stack, cid)
    await read_later(stack, cid)  # not at delivery: only the burst gives it away
    async with live(stack) as client:
        for link in tracked_links(html):
            assert (await client.get(link, headers=PERSON)).status_code == 302

    clicks = [e for e in await engagement(stack, cid) if e.name == "Email Link Clicked"]
    assert len(clicks) == len(tracked_links(html))
    # The first links looked like a person's until the rest came; all are marked now.
    assert {(e.engagement_class, e.engagement_reason) for e in clicks} == {
        ("machine", "all_links_at_once")
    }
    await handle.terminate("test done")


async def test_welcome_gift_goes_to_people_who_opened_not_to_their_scanners(stack):
    cid = stack.new_customer_id()
    handle = await sign_up(stack, cid)
    (welcome,) = await welcome_mails(stack, cid, 1)
    _, html = parts(welcome)
    await delivered(stack, cid)
    async with live(stack) as client:
        for link in tracked_links(html):
            assert (await client.get(link, headers=SCANNER)).status_code == 302
        assert (await client.get(tracked_links(html, "o")[0], headers=APPLE_MPP)).is_success

    await stack.fast_forward(handle, timedelta(days=7, minutes=1))
    state = await handle.query(WelcomeSeries.state)
    assert state.branches["day_7"].startswith("reactivation")
    assert "gift_offer" not in steps_of(journey_mails(stack.catcher, cid, "welcome_series"))
    await handle.terminate("test done")


async def test_reading_later_waits_for_a_delivery_still_being_recorded(stack):
    """The catcher has a message a moment before the send log has its delivery time (the
    relay's 250 is committed after it). ``read_later`` called in that moment must still move
    that delivery back, or the person's open counts as a prefetch at delivery (seen on a
    loaded machine: the welcome series took the reactivation branch instead of the gift)."""
    cid = stack.new_customer_id()
    now = datetime.now(UTC)
    async with stack.sessions.begin() as s:
        row = SendLog(
            idempotency_key=f"t:{cid}:welcome",
            customer_id=cid,
            journey="welcome_series",
            workflow_id=f"welcome-series:{cid}",
            run_chain_id="r",
            step="welcome",
            template="welcome",
            status="sending",
            decided_at=now,
            claimed_at=now,
        )
        s.add(row)
    sent_at = now + timedelta(seconds=1)

    async def relay_answers() -> None:
        await asyncio.sleep(0.5)
        async with stack.sessions.begin() as s:
            sending = await s.get(SendLog, row.id)
            assert sending is not None
            sending.status, sending.sent_at = "sent", sent_at

    answered = asyncio.create_task(relay_answers())
    await read_later(stack, cid)
    await answered
    async with stack.sessions() as s:
        moved = await s.get(SendLog, row.id)
    assert moved is not None and moved.sent_at == sent_at - timedelta(hours=1)
