"""The send pipeline under failure: retries, SMTP outages, bounces, caps, holdouts."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.testing._timeskipping import TimeSkipper, TimeSkippingConfig

from activities.send import SendActivities
from core.rules import in_holdout
from store.models import SendLog, Suppression, utcnow
from testkit.data import TEE, abandon_cart, add_customer, email_for, emails_from_another_journey
from testkit.mail import smtp_outage, wait_for_mail
from testkit.waiting import PATIENCE, eventually
from workflows.cart_recovery import CartRecovery

FAST_RETRY = {
    "initial_interval": "1s",
    "maximum_interval": "2s",
    "backoff": 2.0,
    "give_up_after": "1h",
}
FIRST_STEP_ONLY = {
    "steps": [
        {
            "name": "reminder_1",
            "after": "1h",
            "template": "cart_reminder_1",
            "subject": "{{ first_name }}, you left something in your cart",
        }
    ]
}


class FailsOnceAfterRecording(SendActivities):
    """Crashes right after the send was accepted and recorded, the first time only."""

    failed = 0

    async def _finish(self, key: str, *, status: str, reason: str | None) -> bool:
        recorded = await super()._finish(key, status=status, reason=reason)
        if status == "sent" and FailsOnceAfterRecording.failed == 0:
            FailsOnceAfterRecording.failed += 1
            raise RuntimeError("worker lost right after recording the send")
        return recorded


async def _attempts(handle: Any) -> list[int]:
    """The attempts of the run's send_step activities that started (other activities, such
    as recording the entry, are not counted)."""
    history = await handle.fetch_history()
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    return [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and scheduled.get(e.activity_task_started_event_attributes.scheduled_event_id)
        == "send_step"
    ]


async def _pending_attempt(handle: Any) -> int:
    """The attempt the run's pending activity is at (0: none pending)."""
    pending = (await handle.describe()).raw_description.pending_activities
    return max((p.attempt for p in pending), default=0)


async def test_a_send_retried_after_it_was_accepted_and_recorded_sends_nothing_more(
    make_stack, sessions
):
    FailsOnceAfterRecording.failed = 0
    stack = await make_stack(
        cart_recovery={"send_retry": FAST_RETRY}, send_class=FailsOnceAfterRecording
    )
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)

    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))

    assert FailsOnceAfterRecording.failed == 1
    assert await _attempts(handle) == [2]  # the first attempt failed, the retry completed
    await asyncio.sleep(0.5)
    assert len(stack.catcher.to(email_for(cid))) == 1
    async with sessions() as s:
        rows = (await s.scalars(select(SendLog).where(SendLog.customer_id == cid))).all()
    assert [(r.step, r.status) for r in rows] == [("reminder_1", "sent")]
    await handle.terminate("test done")


async def test_smtp_down_for_a_while_the_email_arrives_once_after_it_comes_back(make_stack):
    stack = await make_stack(cart_recovery={"send_retry": FAST_RETRY})
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)

    with smtp_outage(stack.catcher):
        moving = asyncio.create_task(stack.fast_forward(handle, timedelta(hours=1, minutes=5)))
        # several attempts meet a refused connection
        await eventually(lambda: _pending_attempt(handle), lambda attempt: attempt >= 3)
        assert stack.catcher.to(email_for(cid)) == []
        async with stack.sessions() as s:
            rows = await s.scalar(select(func.count(SendLog.id)).where(SendLog.customer_id == cid))
        assert rows == 0  # nothing recorded as sent while nothing was sent
    await asyncio.wait_for(moving, timeout=PATIENCE)

    mails = await wait_for_mail(stack.catcher, email_for(cid), 1)
    await asyncio.sleep(0.5)
    assert len(stack.catcher.to(email_for(cid))) == 1 == len(mails)
    history = await handle.fetch_history()
    failures = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.attempt > 1
    ]
    assert failures, "the send should have been retried"
    await handle.terminate("test done")


async def test_a_550_for_the_recipient_suppresses_the_address_and_ends_the_journey(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    stack.catcher.rcpt_answers[email_for(cid)] = "550 5.1.1 No such user here"
    try:
        handle = await abandon_cart(stack, cid, TEE)
        await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
        result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    finally:
        del stack.catcher.rcpt_answers[email_for(cid)]

    assert result.outcome == "bounced"
    assert stack.catcher.to(email_for(cid)) == []
    async with stack.sessions() as s:
        suppression = await s.get(Suppression, email_for(cid))
        row = await s.scalar(select(SendLog).where(SendLog.customer_id == cid))
    assert suppression is not None and suppression.reason == "hard_bounce"
    assert row is not None and row.status == "bounced" and "550" in (row.reason or "")

    # A later cart for the same address sends nothing: the gate sees the suppression.
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.outcome == "suppressed"
    assert stack.catcher.to(email_for(cid)) == []


async def test_frequency_cap_counts_other_journeys_and_records_its_decision(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await emails_from_another_journey(stack, cid, journey="welcome_series", count=2)
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))

    state = await handle.query(CartRecovery.state)
    assert state.decisions[0].status == "skipped"
    assert state.decisions[0].reason.startswith("capped")
    assert stack.catcher.to(email_for(cid)) == []
    # Its own reminders do not cap it: day 2 goes out once the other journey's emails age out.
    await stack.fast_forward(handle, timedelta(days=1))
    assert stack.catcher.to(email_for(cid)) == []  # day 2 has not come yet
    await stack.fast_forward(handle, timedelta(days=1))
    mails = await wait_for_mail(stack.catcher, email_for(cid), 1)
    assert [m["X-Journey"] for m in mails] == ["cart_recovery/reminder_2"]
    await handle.terminate("test done")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_holdout_half_of_200_customers_get_nothing_and_the_split_is_stable(
    make_stack, temporal_env
):
    skipping = TimeSkipper(temporal_env.client, config=TimeSkippingConfig()).client
    stack = await make_stack(
        client=skipping, cart_recovery={"holdout_share": 0.5, **FIRST_STEP_ONLY}
    )
    run_tag = stack.settings.temporal_task_queue
    customers = [f"hold-{run_tag}-{i:03d}" for i in range(200)]
    limit = asyncio.Semaphore(20)

    async def one_round() -> dict[str, str]:
        async def journey(cid: str) -> tuple[str, str]:
            async with limit:
                await add_customer(stack, cid)
                handle = await abandon_cart(stack, cid, TEE)
                result = await handle.result()
                return cid, result.decisions[0].status

        return dict(await asyncio.gather(*(journey(c) for c in customers)))

    first = await one_round()
    held = {c for c, status in first.items() if status == "held_out"}
    assert 70 <= len(held) <= 130, len(held)
    assert {status for c, status in first.items() if c not in held} == {"sent"}
    for cid in customers:
        assert (stack.catcher.to(email_for(cid)) == []) == (cid in held)
    async with stack.sessions() as s:
        logged = await s.scalar(
            select(func.count(SendLog.id)).where(
                SendLog.customer_id.in_(held), SendLog.status == "held_out"
            )
        )
    assert logged == len(held)  # every would-be send is on record

    second = await one_round()  # the same customers come back with new carts
    assert {c for c, status in second.items() if status == "held_out"} == held
    assert held == {c for c in customers if in_holdout(c, "cart_recovery", 0.5)}


async def test_transactional_mail_still_reaches_sunset_and_unsubscribed_addresses(stack):
    from temporalio.testing import ActivityEnvironment

    from activities.render import Renderer
    from activities.send import MailSettings
    from core.contracts import SendStepInput
    from journeys.config import NurtureConfig, load_journey
    from store import repo
    from worker import make_mailer

    nurture = load_journey("new_customer_nurture", stack.settings.journeys_dir, NurtureConfig)
    shipping, care = nurture.step("shipping"), nurture.step("care")
    assert shipping.transactional and not care.transactional
    mailer = make_mailer(stack.settings)
    send = SendActivities(
        sessions=stack.sessions,
        mailer=mailer,
        renderer=Renderer(stack.settings.journeys_dir / "templates"),
        mail=MailSettings(
            mail_from=stack.settings.mail_from,
            public_base_url=stack.settings.public_base_url,
            secret_key=stack.settings.secret_key,
            shop=stack.settings.shop,
        ),
    )

    def request(cid: str, step: Any) -> SendStepInput:
        return SendStepInput(
            journey="new_customer_nurture",
            workflow_id=f"new-customer-nurture:{cid}",
            run_chain_id="run-1",
            step=step.name,
            template=step.template,
            subject="Your order is on its way" if step.transactional else step.subject,
            customer_id=cid,
            entered_at=utcnow(),
            now=utcnow(),
            transactional=step.transactional,
            check_orders=False,
            context={"tracking_url": None},
        )

    outcomes = {}
    for reason in ("sunset", "unsubscribed", "hard_bounce"):
        cid = stack.new_customer_id()
        await add_customer(stack, cid)
        async with stack.sessions.begin() as s:
            await repo.suppress(s, email=email_for(cid), customer_id=cid, reason=reason)
        env = ActivityEnvironment()
        outcomes[reason] = (
            (await env.run(send.send_step, request(cid, shipping))).status,
            (await env.run(send.send_step, request(cid, care))).status,
        )
    await mailer.close()

    assert outcomes == {
        "sunset": ("sent", "skipped"),
        "unsubscribed": ("sent", "skipped"),
        "hard_bounce": ("skipped", "skipped"),  # the address takes no mail at all
    }
