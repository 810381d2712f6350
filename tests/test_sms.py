"""Text messages behind the same gate (docs/decisions/0015-sms.md), against real parts: the
Twilio client pointed at the local SMS catcher (which speaks Twilio's Messages API), the
Temporal dev server, the SMTP catcher and SQLite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from devstack.catcher import MailCatcher
from devstack.sms_catcher import SmsCatcher
from store.db import SessionFactory
from testkit.data import add_customer, email_for
from testkit.mail import journey_mails, steps_of, wait_for_mail
from testkit.stack import Stack, running_stack, stack_settings
from testkit.waiting import PATIENCE, eventually
from workflows.nurture import NewCustomerNurture

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
SHIRT = {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90", "category": "apparel"}
SID, TOKEN = "AC" + "1" * 32, "test-auth-token"


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
