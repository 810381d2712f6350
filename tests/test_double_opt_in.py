"""Double opt-in and the consent record, end to end through the HTTP API: with
DOUBLE_OPT_IN on, a signup gets a confirmation email first and no marketing email until its
link's button is pressed (then the consent is recorded with IP address and user agent, and
the welcome series runs); off, a signup is welcomed at once, as always. ``explain`` shows
the consent record."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from core.zones import zone_at_local_hour
from devstack.catcher import MailCatcher
from starter import ops
from starter.ingest.opt_in import IDENTIFIED, UNCONFIRMED
from store.consent import get_consent
from store.db import SessionFactory
from store.models import Suppression
from testkit.data import email_for
from testkit.engagement import CHROME, PERSON, SCANNER
from testkit.mail import journey_mails, parts, steps_of, wait_for_mail
from testkit.stack import WRITE_KEY, Stack, running_stack, stack_settings
from testkit.waiting import PATIENCE, settle
from workflows.cart_recovery import CartRecovery

BEARER = {"Authorization": f"Bearer {WRITE_KEY}"}
CONSENT_TEXT = "Yes, send me the Example Shop's offers by email. I can stop them any time."
TEE = {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90", "quantity": 1}


@pytest.fixture
def double_opt_in() -> bool:
    return True


@pytest.fixture
async def stack(
    temporal_env: WorkflowEnvironment,
    catcher: MailCatcher,
    sessions: SessionFactory,
    db_url: str,
    journeys_dir: Callable[..., Path],
    double_opt_in: bool,
) -> AsyncIterator[Stack]:
    settings = stack_settings(
        database_url=db_url,
        catcher=catcher,
        journeys_dir=journeys_dir(),
        smtp_pool_size=2,
        double_opt_in=double_opt_in,
        consent_text=CONSENT_TEXT,
    )
    async with running_stack(
        temporal_env, settings=settings, sessions=sessions, catcher=catcher
    ) as running:
        yield running


async def _post(http: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await http.post(path, json=body, headers=BEARER)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def _sign_up(stack: Stack, http: Any) -> tuple[str, dict[str, Any]]:
    cid = stack.new_customer_id()
    traits = {"email": email_for(cid), "firstName": "Ada", "timezone": zone_at_local_hour(11)}
    await _post(http, "/v1/identify", {"userId": cid, "traits": traits})
    return cid, await _post(http, "/v1/track", {"userId": cid, "event": "Signed Up"})


async def test_a_signup_is_confirmed_before_any_marketing_email(stack, http):
    cid, signed_up = await _sign_up(stack, http)
    assert signed_up["action"] == "awaiting_confirmation"

    (mail,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
    assert steps_of(journey_mails(stack.catcher, cid, "confirm_subscription")) == ["confirm"]
    assert "confirm" in str(mail["Subject"]).lower()
    text, _ = parts(mail)
    assert CONSENT_TEXT in text
    link = re.search(r"https://shop\.test(/confirm/\S+)", text)
    assert link is not None, text
    confirm = link.group(1)
    async with stack.sessions() as s:
        suppression = await s.get(Suppression, email_for(cid))
        record = await get_consent(s, email=email_for(cid))
    assert suppression is not None and suppression.reason == UNCONFIRMED
    assert record is not None and record.double_opt_in and record.confirmed_at is None

    # Marketing waits: a cart left meanwhile gets no reminder, the welcome series no start.
    await _post(
        http,
        "/v1/track",
        {"userId": cid, "event": "Checkout Started", "properties": {"products": [TEE]}},
    )
    cart = stack.client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{cid}")
    await stack.fast_forward(cart, timedelta(hours=1, minutes=5))
    ended = await asyncio.wait_for(cart.result(), timeout=PATIENCE)
    assert ended.outcome == "suppressed"
    assert journey_mails(stack.catcher, cid, "cart_recovery") == []
    assert journey_mails(stack.catcher, cid, "welcome_series") == []

    # A link scanner's GET of the page confirms nothing; the page shows the text agreed to.
    page = await http.get(confirm, headers=SCANNER)
    assert page.status_code == 200 and 'method="post"' in page.text
    assert html.escape(CONSENT_TEXT) in page.text
    await settle()
    async with stack.sessions() as s:
        record = await get_consent(s, email=email_for(cid))
    assert record is not None and record.confirmed_at is None

    pressed = await http.post(confirm, headers=PERSON)
    assert pressed.status_code == 200 and "subscribed" in pressed.text

    async with stack.sessions() as s:
        record = await get_consent(s, email=email_for(cid))
        assert await s.get(Suppression, email_for(cid)) is None
    assert record is not None and record.confirmed_at is not None
    assert record.confirm_ip == "127.0.0.1" and record.confirm_user_agent == CHROME
    assert record.source == "Signed Up event" and record.text == CONSENT_TEXT
    # The welcome series runs now.
    await wait_for_mail(stack.catcher, email_for(cid), 2)
    assert steps_of(journey_mails(stack.catcher, cid, "welcome_series")) == ["welcome"]

    # A second press of the same link changes nothing (and welcomes nobody twice).
    assert (await http.post(confirm, headers=PERSON)).status_code == 200
    await settle()
    assert len(journey_mails(stack.catcher, cid, "welcome_series")) == 1

    why = await ops.explain(stack.sessions, stack.client, cid)
    assert why.consent is not None
    line = ops.consent_line(why.consent)
    assert "Signed Up event" in line and "double opt-in confirmed" in line
    assert "127.0.0.1" in line and CHROME in line and CONSENT_TEXT in line


async def test_a_forged_or_unknown_confirmation_link_confirms_nothing(stack, http):
    cid, _ = await _sign_up(stack, http)
    (mail,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
    text, _ = parts(mail)
    link = re.search(r"https://shop\.test(/confirm/\S+)", text)
    assert link is not None
    forged = link.group(1)[:-3] + ("AAA" if not link.group(1).endswith("AAA") else "BBB")
    assert (await http.post(forged, headers=PERSON)).status_code == 404
    assert (await http.get("/confirm/nonsense")).status_code == 404
    async with stack.sessions() as s:
        record = await get_consent(s, email=email_for(cid))
        assert record is not None and record.confirmed_at is None
        assert await s.get(Suppression, email_for(cid)) is not None

    # A user agent longer than any real one is kept cut, never refused.
    long_agent = {"User-Agent": "Mozilla/5.0 " + "x" * 5000}
    assert (await http.post(link.group(1), headers=long_agent)).status_code == 200
    async with stack.sessions() as s:
        record = await get_consent(s, email=email_for(cid))
    assert record is not None and record.confirmed_at is not None
    assert len(record.confirm_user_agent or "") == 2000


async def test_an_identify_that_gives_consent_is_confirmed_too(stack, http):
    cid = stack.new_customer_id()
    traits = {
        "email": email_for(cid),
        "timezone": zone_at_local_hour(11),
        "marketingConsent": True,
    }
    identified = await _post(http, "/v1/identify", {"userId": cid, "traits": traits})
    assert identified["action"] == "awaiting_confirmation"
    (mail,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
    text, _ = parts(mail)
    link = re.search(r"https://shop\.test(/confirm/\S+)", text)
    assert link is not None, text
    async with stack.sessions() as s:
        suppression = await s.get(Suppression, email_for(cid))
    assert suppression is not None and suppression.reason == UNCONFIRMED

    assert (await http.post(link.group(1), headers=PERSON)).status_code == 200
    async with stack.sessions() as s:
        record = await get_consent(s, email=email_for(cid))
        assert await s.get(Suppression, email_for(cid)) is None
    assert record is not None and record.source == IDENTIFIED and record.confirmed_at
    await settle()
    assert journey_mails(stack.catcher, cid, "welcome_series") == []  # no signup, no welcome


@pytest.mark.parametrize("double_opt_in", [False])
async def test_without_double_opt_in_a_signup_is_welcomed_at_once(stack, http):
    cid, signed_up = await _sign_up(stack, http)
    assert signed_up["action"] == "started"
    await wait_for_mail(stack.catcher, email_for(cid), 1)
    assert steps_of(journey_mails(stack.catcher, cid, "welcome_series")) == ["welcome"]
    assert journey_mails(stack.catcher, cid, "confirm_subscription") == []
    async with stack.sessions() as s:
        record = await get_consent(s, email=email_for(cid))
        assert await s.get(Suppression, email_for(cid)) is None
    assert record is not None and not record.double_opt_in and record.text == CONSENT_TEXT
    why = await ops.explain(stack.sessions, stack.client, cid)
    assert why.consent is not None and "single opt-in" in ops.consent_line(why.consent)
