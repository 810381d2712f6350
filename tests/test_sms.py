"""Text messages behind the same gate (docs/decisions/0015-sms.md), against real parts: the
Twilio client pointed at the local SMS catcher (which speaks Twilio's Messages API), the
Temporal dev server, the SMTP catcher and SQLite."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from core.contracts import SendStepInput
from core.sending import send_step_input
from core.sms import twilio_signature
from core.zones import zone_at_local_hour
from devstack.catcher import MailCatcher
from devstack.sms_catcher import SmsCatcher
from journeys.config import NurtureConfig
from starter.http import create_app
from starter.report_page import journey_page
from starter.reports import as_table, journey_report
from store import sms as sms_store
from store.db import SessionFactory
from store.models import Customer, SendLog
from store.models import Event as EventRow
from testkit.data import add_customer, email_for
from testkit.mail import journey_mails, steps_of, wait_for_mail
from testkit.stack import WRITE_KEY, Stack, running_stack, stack_settings
from testkit.waiting import PATIENCE, eventually
from worker import build_activities, make_mailer
from workflows.nurture import NewCustomerNurture

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
SHIRT = {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90", "category": "apparel"}
SID, TOKEN = "AC" + "1" * 32, "test-auth-token"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.fixture(scope="session")
def sms() -> Iterator[SmsCatcher]:
    catcher = SmsCatcher(account_sid=SID, auth_token=TOKEN).start()
    yield catcher
    catcher.stop()


@pytest.fixture
async def sms_stack(
    temporal_env: WorkflowEnvironment,
    catcher: MailCatcher,
    sms: SmsCatcher,
    sessions: SessionFactory,
    db_url: str,
    journeys_dir: Callable[..., Path],
) -> AsyncIterator[Callable[..., Any]]:
    """The stack with texts sent through the Twilio client to the SMS catcher."""
    stacks: list[Any] = []

    async def make(**journey_changes: Any) -> Stack:
        settings = stack_settings(
            database_url=db_url,
            catcher=catcher,
            journeys_dir=journeys_dir(**journey_changes),
            smtp_pool_size=2,
            sms_provider="local",
            twilio_base_url=sms.base_url,
            twilio_account_sid=SID,
            twilio_auth_token=TOKEN,
        )
        opened = running_stack(temporal_env, settings=settings, sessions=sessions, catcher=catcher)
        stacks.append(opened)
        return await opened.__aenter__()

    yield make
    for opened in reversed(stacks):
        await opened.__aexit__(None, None, None)


def new_phone() -> str:
    """A valid German mobile number, one per test customer."""
    return f"+49151{uuid.uuid4().int % 10**8:08d}"


async def customer_with_phone(
    stack: Stack, *, consent: bool = True, timezone: str | None = None
) -> tuple[str, str]:
    cid, phone = stack.new_customer_id(), new_phone()
    await add_customer(stack, cid, timezone=timezone)
    await stack.journeys.identify(customer_id=cid, traits={"phone": phone, "smsConsent": consent})
    return cid, phone


async def first_order(stack: Stack, cid: str) -> Any:
    result = await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o1-{cid}", "total": "19.90", "lines": [SHIRT]}
    )
    assert result.action == "started" and result.workflow_id is not None
    return stack.client.get_workflow_handle_for(NewCustomerNurture.run, result.workflow_id)


async def decisions(handle: Any, count: int = 2, field: str = "status") -> list[tuple[str, Any]]:
    """(step, status or code) of the run's decisions, once there are ``count``."""

    async def decided() -> list[tuple[str, Any]]:
        state = await handle.query(NewCustomerNurture.state)
        return [(d.step, getattr(d, field)) for d in state.decisions]

    return await eventually(decided, lambda d: len(d) >= count, PATIENCE)


async def wait_for_texts(sms: SmsCatcher, phone: str, count: int) -> list[dict[str, Any]]:
    async def caught() -> list[dict[str, Any]]:
        return sms.to(phone)

    return await eventually(caught, lambda got: len(got) >= count, PATIENCE)


async def test_a_first_order_sends_the_thank_you_email_then_the_text(sms_stack, sms):
    stack = await sms_stack()
    cid, phone = await customer_with_phone(stack)
    handle = await first_order(stack, cid)

    mails = await wait_for_mail(stack.catcher, email_for(cid), 1)
    texts = await wait_for_texts(sms, phone, 1)
    assert steps_of(journey_mails(stack.catcher, cid, "new_customer_nurture")) == ["thanks"]
    (text,) = texts
    assert text["from"] and text["body"].startswith("Demo Shop: thank you for your order, Ada!")
    assert "NEXT-" in text["body"]
    assert text["body"].endswith("Reply STOP to opt out")
    assert text["status_callback"] == "https://shop.test/v1/sms/status"
    assert (await decisions(handle))[:2] == [("thanks", "sent"), ("thanks_sms", "sent")]
    assert mails
    await handle.terminate("test done")


async def test_no_sms_consent_no_text(sms_stack, sms):
    stack = await sms_stack()
    cid, phone = await customer_with_phone(stack, consent=False)
    handle = await first_order(stack, cid)

    got = await decisions(handle, field="code")
    assert got[:2] == [("thanks", None), ("thanks_sms", "no_sms_consent")]
    assert sms.to(phone) == []
    assert len(await wait_for_mail(stack.catcher, email_for(cid), 1)) == 1
    await handle.terminate("test done")


# -- webhooks ------------------------------------------------------------------------------


@pytest.fixture
async def api(sms_stack) -> AsyncIterator[tuple[Stack, httpx.AsyncClient]]:
    stack = await sms_stack()
    app = create_app(stack.settings, journeys=stack.journeys)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as client:
        yield stack, client


async def twilio_post(
    client: httpx.AsyncClient, path: str, form: dict[str, str], *, token: str = TOKEN
) -> httpx.Response:
    """A webhook as Twilio sends it: form-encoded, signed over PUBLIC_BASE_URL + path."""
    signature = twilio_signature(f"https://shop.test{path}", form, token)
    return await client.post(path, data=form, headers={"X-Twilio-Signature": signature})


async def reply(client: httpx.AsyncClient, phone: str, body: str, **kw: str) -> httpx.Response:
    form = {"MessageSid": f"SM{uuid.uuid4().hex}", "From": phone, "To": "+15005550006"}
    return await twilio_post(client, "/v1/sms/inbound", {**form, "Body": body}, **kw)


async def customer_row(stack: Stack, cid: str) -> Customer:
    async with stack.sessions() as s:
        customer = await s.get(Customer, cid)
        assert customer is not None
        return customer


async def suppressed(stack: Stack, phone: str) -> str | None:
    async with stack.sessions() as s:
        return await sms_store.sms_suppression(s, phone=phone)


async def test_stop_mid_journey_ends_the_texts_and_leaves_the_emails(api, sms):
    stack, client = api
    cid, phone = await customer_with_phone(stack)
    handle = await first_order(stack, cid)
    await wait_for_texts(sms, phone, 1)

    answer = await reply(client, phone, " stop ")
    assert answer.status_code == 200 and "<Response>" in answer.text
    customer = await customer_row(stack, cid)
    assert customer.sms_consent is False and customer.sms_consent_source == "reply: stop"
    assert await suppressed(stack, phone) == "stop"

    await stack.journeys.order_shipped(
        {"customer_id": cid, "order_id": f"o1-{cid}", "tracking_url": "https://track.example/1"}
    )
    assert len(await wait_for_mail(stack.catcher, email_for(cid), 2)) == 2  # email goes on
    got = await decisions(handle, 4, field="code")
    assert got[2:4] == [(f"shipping_o1-{cid}", None), (f"shipping_sms_o1-{cid}", "suppressed")]
    assert len(sms.to(phone)) == 1  # the thank-you only

    # START opts back in: the next text goes out.
    assert (await reply(client, phone, "START")).status_code == 200
    assert await suppressed(stack, phone) is None
    assert (await customer_row(stack, cid)).sms_consent is True
    await handle.terminate("test done")


async def test_chinese_opt_out_words_stop_texts(api, sms):
    stack, client = api
    for word in ("退订", "TD", "T"):
        cid, phone = await customer_with_phone(stack)
        assert (await reply(client, phone, word)).status_code == 200
        assert await suppressed(stack, phone) == "stop", word
        assert (await customer_row(stack, cid)).sms_consent is False


async def test_a_forged_signature_is_refused_and_records_nothing(api, sms):
    stack, client = api
    cid, phone = await customer_with_phone(stack)
    forged = await reply(client, phone, "STOP", token="not-the-auth-token")
    unsigned = await client.post("/v1/sms/inbound", data={"From": phone, "Body": "STOP"})
    status = await twilio_post(
        client,
        "/v1/sms/status",
        {"MessageSid": "SMx", "MessageStatus": "failed", "ErrorCode": "21211"},
        token="wrong",
    )

    assert (forged.status_code, unsigned.status_code, status.status_code) == (403, 403, 403)
    assert await suppressed(stack, phone) is None
    assert (await customer_row(stack, cid)).sms_consent is True
    async with stack.sessions() as s:
        names = (await s.scalars(select(EventRow.name).where(EventRow.customer_id == cid))).all()
    assert "SMS Opted Out" not in names


async def text_sent_to(stack: Stack, sms: SmsCatcher) -> tuple[str, str, Any]:
    """A customer whose thank-you text went out: (customer, number, the run)."""
    cid, phone = await customer_with_phone(stack)
    handle = await first_order(stack, cid)
    await wait_for_texts(sms, phone, 1)
    await decisions(handle, 2)
    return cid, phone, handle


async def send_row(stack: Stack, cid: str, step: str) -> SendLog:
    async with stack.sessions() as s:
        row = await s.scalar(
            select(SendLog).where(SendLog.customer_id == cid, SendLog.step == step)
        )
        assert row is not None
        return row


async def test_status_callbacks_record_delivery_and_suppress_dead_numbers(api, sms):
    stack, client = api
    outcomes = {}
    for status, code in (("delivered", ""), ("undelivered", "30003"), ("failed", "21610")):
        cid, phone, handle = await text_sent_to(stack, sms)
        row = await send_row(stack, cid, "thanks_sms")
        assert row.channel == "sms" and row.status == "sent" and row.recipient == phone
        assert row.message_id == sms.to(phone)[0]["sid"]
        form = {"MessageSid": str(row.message_id), "MessageStatus": status, "To": phone}
        answer = await twilio_post(client, "/v1/sms/status", {**form, "ErrorCode": code})
        assert answer.status_code == 204
        row = await send_row(stack, cid, "thanks_sms")
        outcomes[status] = (row.delivery_status, row.delivery_error, await suppressed(stack, phone))
        await handle.terminate("test done")

    assert outcomes == {
        "delivered": ("delivered", None, None),
        "undelivered": ("undelivered", "30003", None),  # unreachable for now: texts go on
        "failed": ("failed", "21610", "opted_out_at_carrier"),
    }


# the report reads every send of the journey: a store of its own (conftest.own_sqlite_url)
@pytest.mark.own_store
async def test_the_report_counts_texts_apart_from_emails(api, sms):
    """Issue 17 item 7: the effect report splits sends by channel (a text step's conversions
    and lift are its own step's rows)."""
    stack, client = api
    since = datetime.now(UTC)
    cid, phone, handle = await text_sent_to(stack, sms)
    await wait_for_mail(stack.catcher, email_for(cid), 1)
    row = await send_row(stack, cid, "thanks_sms")
    form = {"MessageSid": str(row.message_id), "MessageStatus": "delivered", "To": phone}
    answer = await twilio_post(client, "/v1/sms/status", {**form, "ErrorCode": ""})
    assert answer.status_code == 204
    await handle.terminate("test done")

    report = await journey_report(
        stack.sessions, "new_customer_nurture", windows=["10d"], since=since
    )
    email, text = report["channels"]["email"], report["channels"]["sms"]
    assert (email["statuses"], email["delivery"], email["steps"]) == ({"sent": 1}, {}, ["thanks"])
    assert (text["statuses"], text["delivery"], text["steps"]) == (
        {"sent": 1},
        {"delivered": 1},
        ["thanks_sms"],
    )
    assert "thanks_sms" in {step["step"] for step in report["steps"]}  # its own lift rows
    assert "sms   sent 1, delivered 1, undelivered 0" in as_table(report)
    assert "<h2>By channel</h2>" in journey_page(report)


async def test_a_bad_phone_number_is_refused_naming_the_field(api):
    stack, client = api
    headers = {"Authorization": f"Bearer {WRITE_KEY}"}
    answer = await client.post(
        "/v1/identify",
        headers=headers,
        json={"userId": "c-bad-phone", "traits": {"email": "x@example.com", "phone": "12"}},
    )
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"][-2:] == ["traits", "phone"]
    assert "phone number" in error["msg"]
    good = await client.post(
        "/v1/identify",
        headers=headers,
        json={
            "userId": "c-good-phone",
            "traits": {"email": "y@example.com", "phone": "+49 151 2345 6789"},
        },
    )
    assert good.status_code == 200
    assert (await customer_row(stack, "c-good-phone")).phone == "+4915123456789"


# -- the send itself: once, and uncertain when no answer came --------------------------------


def text_send(stack: Stack) -> Any:
    """The worker's send_step activity, built as worker.py builds it."""
    built = build_activities(
        settings=stack.settings, sessions=stack.sessions, mailer=make_mailer(stack.settings)
    )
    return next(a for a in built if getattr(a, "__name__", "") == "send_step")


def thanks_text(stack: Stack, cid: str, run: str) -> SendStepInput:
    config = stack.journeys.config("new_customer_nurture", NurtureConfig)
    now = datetime.now(UTC).replace(hour=12)  # noon UTC: no quiet hours in UTC
    return send_step_input(
        config,
        config.step("thanks_sms"),
        workflow_id=f"new-customer-nurture:{cid}",
        run_chain_id=run,
        customer_id=cid,
        entered_at=now,
        now=now,
        context={"order_id": f"o1-{cid}"},
    )


async def test_a_retried_send_sends_the_text_once(sms_stack, sms):
    stack = await sms_stack()
    cid, phone = await customer_with_phone(stack, timezone="UTC")
    send, req = text_send(stack), thanks_text(stack, cid, "run-retried")
    env = ActivityEnvironment()

    first = await env.run(send, req)
    requests = sms.requests
    again = await env.run(send, req)  # the activity retried after its result was lost

    assert first.status == "sent" and first.message_id and not first.already_done
    assert again.status == "sent" and again.already_done and again.message_id == first.message_id
    assert sms.requests == requests and len(sms.to(phone)) == 1


async def test_a_request_without_an_answer_is_uncertain_and_not_sent_again(sms_stack, sms):
    stack = await sms_stack()
    cid, phone = await customer_with_phone(stack, timezone="UTC")
    send, req = text_send(stack), thanks_text(stack, cid, "run-dropped")
    sms.answers[phone] = "drop"  # the catcher keeps the text and never answers
    env = ActivityEnvironment()

    first = await env.run(send, req)
    requests = sms.requests
    again = await env.run(send, req)

    assert (first.status, first.code) == ("uncertain", "uncertain")
    assert (again.status, again.already_done) == ("uncertain", True)
    assert sms.requests == requests and len(sms.to(phone)) == 1  # it did arrive, once
    row = await send_row(stack, cid, "thanks_sms")
    assert row.status == "uncertain" and row.channel == "sms"


async def test_a_refused_number_fails_the_text_and_is_suppressed(sms_stack, sms):
    stack = await sms_stack()
    cid, phone = await customer_with_phone(stack, timezone="UTC")
    sms.answers[phone] = ("error", 400, "21211")
    outcome = await ActivityEnvironment().run(text_send(stack), thanks_text(stack, cid, "run-bad"))
    assert (outcome.status, outcome.code) == ("failed", "rejected") and "21211" in str(
        outcome.detail
    )
    assert await suppressed(stack, phone) == "invalid_number"


async def test_links_in_texts_are_short_tracked_links(api, sms):
    stack, client = api
    _, phone, handle = await text_sent_to(stack, sms)
    (text,) = sms.to(phone)
    (link,) = re.findall(r"https://shop\.test/t/c/(\S+)", text["body"])
    assert len(link) <= 12
    clicked = await client.get(f"/t/c/{link}", headers={"User-Agent": BROWSER})
    assert clicked.status_code == 302 and clicked.headers["location"] == "https://shop.test"
    assert (await client.get("/t/c/nosuchtk")).status_code == 404
    await handle.terminate("test done")


async def test_stop_drops_a_text_held_by_quiet_hours_at_once(api, sms):
    """20:xx where the customer lives: the email goes out (email's quiet hours begin at 21),
    the text is held until 09:00; a STOP drops it at once, the run goes on."""
    stack, client = api
    cid, phone = await customer_with_phone(stack, timezone=zone_at_local_hour(20))
    handle = await first_order(stack, cid)
    held = await decisions(handle, 2, field="code")
    assert held[:2] == [("thanks", None), ("thanks_sms", "quiet_hours")]
    assert (await handle.query(NewCustomerNurture.state)).step == "waiting:thanks_sms"

    assert (await reply(client, phone, "STOP")).status_code == 200

    async def where() -> str:
        return str((await handle.query(NewCustomerNurture.state)).step)

    assert await eventually(where, lambda step: step == "waiting:care", PATIENCE) == "waiting:care"
    assert sms.to(phone) == []  # the held text was dropped, not sent at 09:00
    state = await handle.query(NewCustomerNurture.state)
    assert state.outcome is None  # the emails go on
    await handle.terminate("test done")
