"""A send as a state machine, against a real SMTP server (testkit.relay: answers given codes,
drops the line after the final dot, never answers it, refuses logins) and a real store
(SQLite and PostgreSQL): what reaches the relay, what the send log says, what a retry does.

The send activity runs as a worker runs it, attempt by attempt (ActivityEnvironment); a
"retry" is the same request in the next attempt."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.breaker import PAUSED_ERROR, BreakerPolicy
from activities.delivery import Attempt
from activities.mailer import SmtpPool
from activities.render import Renderer
from activities.send import MailSettings, SendActivities
from core.contracts import SendOutcome, SendStepInput
from core.sending import send_step_input
from journeys.config import NurtureConfig, load_journey
from settings import ROOT, Settings
from store import repo, sends
from store.db import SessionFactory
from store.models import SendLog, SmtpBreaker, Suppression, utcnow
from testkit.data import TEE, abandon_cart, add_customer, email_for
from testkit.relay import Relay

SETTINGS = Settings(environment="test")
NURTURE = load_journey("new_customer_nurture", ROOT / "journeys", NurtureConfig)


@pytest.fixture
def relay() -> Iterator[Relay]:
    server = Relay()
    yield server
    server.stop()


def activities(
    sessions: SessionFactory,
    relay: Relay,
    *,
    cls: type[SendActivities] = SendActivities,
    username: str = "",
    breaker: BreakerPolicy | None = None,
) -> tuple[SendActivities, SmtpPool]:
    pool = SmtpPool(
        host="127.0.0.1",
        port=relay.port,
        username=username,
        password="secret" if username else "",
        size=2,
        timeout=5,
        reply_timeout=2,
    )
    send = cls(
        sessions=sessions,
        mailer=pool,
        renderer=Renderer(ROOT / "journeys" / "templates"),
        mail=MailSettings(
            mail_from="Shop <shop@shop.test>",
            public_base_url="https://shop.test",
            secret_key="test-secret-key-0123456789",
            shop=SETTINGS.shop,
        ),
        breaker=breaker or BreakerPolicy(threshold=1000),
    )
    return send, pool


async def customer(sessions: SessionFactory) -> str:
    cid = f"s-{uuid.uuid4().hex[:10]}"
    async with sessions.begin() as s:
        await repo.upsert_customer(
            s, customer_id=cid, email=f"{cid}@example.com", first_name="Ada", timezone="UTC"
        )
    return cid


def request(cid: str, *, run: str = "run-1", **config: Any) -> SendStepInput:
    """The nurture journey's care email (no quiet hours: UTC at any hour is fine for it)."""
    journey = NURTURE.model_copy(
        update={"quiet_hours": NURTURE.quiet_hours.model_copy(update={"enabled": False})} | config
    )
    now = utcnow()
    return send_step_input(
        journey,
        journey.step("care"),
        workflow_id=f"new-customer-nurture:{cid}",
        run_chain_id=run,
        customer_id=cid,
        entered_at=now,
        now=now,
        ignore_order_id="o-1",
    )


def attempt(n: int, *, run_id: str = "run") -> ActivityEnvironment:
    """An activity environment as the n-th attempt of one activity of one run."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=n, workflow_run_id=run_id)
    return env


async def row(sessions: SessionFactory, req: SendStepInput) -> SendLog | None:
    async with sessions() as s:
        return await repo.get_send(s, key=req.idempotency_key)


async def suppressed(sessions: SessionFactory, cid: str) -> bool:
    async with sessions() as s:
        return await s.get(Suppression, f"{cid}@example.com") is not None


async def test_a_drop_after_the_dot_is_delivered_once_recorded_uncertain_and_not_sent_again(
    sessions, relay
):
    send, pool = activities(sessions, relay)
    cid = await customer(sessions)
    relay.after_dot[f"{cid}@example.com"] = "drop"
    req = request(cid)
    try:
        first = await attempt(1).run(send.send_step, req)
        again = await attempt(2).run(send.send_step, req)  # what a retry would do
    finally:
        await pool.close()

    assert (first.status, first.code) == ("uncertain", "uncertain")
    assert "uncertain at dot" in (first.detail or "")
    assert (again.status, again.already_done) == ("uncertain", True)
    assert list(relay.delivered().values()) == [1]  # the relay has it, once
    found = await row(sessions, req)
    assert found is not None and found.status == "uncertain"


async def test_a_journey_that_says_resend_sends_an_uncertain_email_again(sessions, relay):
    send, pool = activities(sessions, relay)
    cid = await customer(sessions)
    relay.after_dot[f"{cid}@example.com"] = "drop"
    req = request(cid, on_uncertain="resend")
    try:
        first = await attempt(1).run(send.send_step, req)
        del relay.after_dot[f"{cid}@example.com"]
        again = await attempt(2).run(send.send_step, req)
    finally:
        await pool.close()

    assert (first.status, again.status) == ("uncertain", "sent")
    assert list(relay.delivered().values()) == [2]  # twice, with the same Message-ID
    found = await row(sessions, req)
    assert found is not None and found.status == "sent"


async def test_a_cancelled_attempt_after_the_dot_is_uncertain_and_not_sent_again(sessions, relay):
    send, pool = activities(sessions, relay)
    cid = await customer(sessions)
    relay.after_dot[f"{cid}@example.com"] = "hang"
    req = request(cid)
    env = attempt(1)
    try:
        task = asyncio.create_task(env.run(send.send_step, req))
        for _ in range(150):  # the relay has the whole message; the reply never comes
            if relay.kept:
                break
            await asyncio.sleep(0.02)
        env.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        relay.after_dot.clear()
        again = await attempt(2).run(send.send_step, req)
    finally:
        await pool.close()

    assert (again.status, again.already_done) == ("uncertain", True)
    found = await row(sessions, req)
    assert found is not None and found.status == "uncertain"
    assert found.reason_detail == "cancelled after the final dot"
    assert list(relay.delivered().values()) == [1]


async def test_a_claim_left_sending_by_a_dead_attempt_becomes_uncertain_not_a_second_copy(
    sessions, relay
):
    send, pool = activities(sessions, relay)
    cid = await customer(sessions)
    req = request(cid)
    async with sessions.begin() as s:  # attempt 1 claimed it, wrote the dot, and died
        dead = SendLog(
            idempotency_key=req.idempotency_key,
            customer_id=cid,
            journey=req.journey,
            workflow_id=req.workflow_id,
            run_chain_id=req.run_chain_id,
            step=req.step,
            template=req.template,
            status="sending",
            recipient=f"{cid}@example.com",
            decided_at=req.now,
        )
        sends.take(dead, attempt="run/1/1", lease=timedelta(minutes=11))
        s.add(dead)
    try:
        retry = await attempt(2).run(send.send_step, req)
    finally:
        await pool.close()

    assert (retry.status, retry.code) == ("uncertain", "uncertain")
    assert "run/1/1" in (retry.detail or "")
    assert relay.kept == []
    async with sessions.begin() as s:  # the dead attempt's token still names the claim ...
        late = await sends.finish(
            s,
            key=req.idempotency_key,
            attempt="run/1/1",
            status="sent",
            code=None,
            detail=None,
            reason=None,
        )
        # ... and no other attempt can end it
        other = await sends.finish(
            s,
            key=req.idempotency_key,
            attempt="run/1/3",
            status="failed",
            code="rejected",
            detail=None,
            reason=None,
        )
        assert not await sends.release(s, key=req.idempotency_key, attempt="run/1/3")
    assert late is not None and other is None


async def test_554_5_7_1_never_suppresses_the_send_is_deferred_then_sent_when_the_relay_recovers(
    sessions, relay, caplog
):
    send, pool = activities(sessions, relay)
    cid = await customer(sessions)
    req = request(cid)
    relay.every_rcpt = "554 5.7.1 <x>: Relay access denied"
    try:
        with pytest.raises(ApplicationError) as deferred:
            await attempt(1).run(send.send_step, req)
        assert deferred.value.type == "SmtpDeferred" and not deferred.value.non_retryable
        assert await row(sessions, req) is None  # nothing recorded while it is retried
        assert not await suppressed(sessions, cid)
        relay.every_rcpt = None
        sent = await attempt(2).run(send.send_step, req)
    finally:
        await pool.close()

    assert sent.status == "sent"
    assert not await suppressed(sessions, cid)
    assert list(relay.delivered().values()) == [1]
    found = await row(sessions, req)
    assert found is not None and found.status == "sent" and found.sent_at is not None
    async with sessions() as s:
        who = await repo.get_customer(s, customer_id=cid)
    assert who is not None and who.last_emailed_at == req.now  # the win-back sweep reads it
    # ... recorded at the first try, on the connection held across the dot
    assert "recording a send failed" not in caplog.text


async def test_535_at_login_is_retried_not_failed(sessions, relay):
    send, pool = activities(sessions, relay, username="shop")
    cid = await customer(sessions)
    req = request(cid)
    relay.refuse_logins = True  # a credential being rotated
    try:
        for n in (1, 2):
            with pytest.raises(ApplicationError) as deferred:
                await attempt(n).run(send.send_step, req)
            assert deferred.value.type == "SmtpDeferred" and not deferred.value.non_retryable
            assert "535" in str(deferred.value)
        assert await row(sessions, req) is None
        relay.refuse_logins = False
        sent = await attempt(3).run(send.send_step, req)
    finally:
        await pool.close()
    assert sent.status == "sent"
    assert not await suppressed(sessions, cid)


async def test_a_full_mailbox_is_retried_and_suppresses_nothing(sessions, relay):
    send, pool = activities(sessions, relay)
    cid = await customer(sessions)
    relay.at_rcpt[f"{cid}@example.com"] = "452 4.2.2 Mailbox full"
    req = request(cid)
    try:
        with pytest.raises(ApplicationError, match="452"):
            await attempt(1).run(send.send_step, req)
    finally:
        await pool.close()
    assert await row(sessions, req) is None
    assert not await suppressed(sessions, cid)


async def test_a_bad_mailbox_after_the_dot_is_bounced_and_suppressed(sessions, relay):
    send, pool = activities(sessions, relay)
    cid = await customer(sessions)
    relay.after_dot[f"{cid}@example.com"] = "550 5.1.1 User unknown"
    req = request(cid)
    try:
        outcome = await attempt(1).run(send.send_step, req)
    finally:
        await pool.close()
    assert (outcome.status, outcome.code) == ("bounced", "hard_bounce")
    found = await row(sessions, req)
    assert found is not None and found.status == "bounced" and found.attempt == "run/test/1"
    assert await suppressed(sessions, cid)


async def test_the_breaker_opens_after_n_relay_failures_holds_every_send_and_closes_after_a_probe(
    sessions, relay
):
    policy = BreakerPolicy(threshold=3, cooldown=timedelta(seconds=1))
    send, pool = activities(sessions, relay, breaker=policy)
    cids = [await customer(sessions) for _ in range(5)]
    relay.every_rcpt = "554 5.7.1 Relay access denied"
    try:
        for cid in cids[:3]:
            with pytest.raises(ApplicationError, match=r"5\.7\.1"):
                await attempt(1).run(send.send_step, request(cid))
        async with sessions() as s:
            state = await sends.breaker(s, relay=pool.relay)
        assert state is not None and state.opened_at is not None
        assert state.reason == "sender_or_relay 554 5.7.1"

        relay.every_rcpt = None  # the relay is fine again, but the cool-down holds sends
        kept = len(relay.kept)
        with pytest.raises(ApplicationError) as paused:
            await attempt(1).run(send.send_step, request(cids[3]))
        assert paused.value.type == PAUSED_ERROR and not paused.value.non_retryable
        assert paused.value.next_retry_delay is not None
        assert len(relay.kept) == kept  # held: the relay never saw it

        await asyncio.sleep(1.1)
        probe = await attempt(2).run(send.send_step, request(cids[3]))  # the probe
        after = await attempt(1).run(send.send_step, request(cids[4]))
    finally:
        await pool.close()
    assert (probe.status, after.status) == ("sent", "sent")
    async with sessions() as s:
        state = await sends.breaker(s, relay=pool.relay)
    assert state is not None and state.opened_at is None and state.failures == 0
    for cid in cids:
        assert not await suppressed(sessions, cid)


async def test_a_failed_probe_pauses_again(sessions, relay, caplog):
    caplog.set_level(logging.INFO, logger="activities.breaker")
    policy = BreakerPolicy(threshold=1, cooldown=timedelta(minutes=5))
    send, pool = activities(sessions, relay, breaker=policy)
    cid = await customer(sessions)
    relay.every_rcpt = "554 5.7.1 Relay access denied"
    try:
        with pytest.raises(ApplicationError, match=r"5\.7\.1"):
            await attempt(1).run(send.send_step, request(cid))
        async with sessions.begin() as s:  # the cool-down is over (without waiting for it)
            paused = await s.get(SmtpBreaker, pool.relay)
            assert paused is not None and paused.opened_at is not None
            paused.opened_at -= timedelta(minutes=6)
        with pytest.raises(ApplicationError, match=r"5\.7\.1"):  # the probe, refused
            await attempt(2).run(send.send_step, request(cid))
        with pytest.raises(ApplicationError) as paused:  # paused for another cool-down
            await attempt(3).run(send.send_step, request(cid))
    finally:
        await pool.close()
    assert paused.value.type == PAUSED_ERROR
    assert caplog.text.count("SMTP sending paused for every journey") == 1
    assert "this send is the probe" in caplog.text
    assert "SMTP sending stays paused" in caplog.text


class UnsubscribedMeanwhile(SendActivities):
    """The customer unsubscribes after the gate said yes and before the claim is taken."""

    async def _claim(self, a: Attempt, message_id: str, coupon_code: str | None) -> None:
        async with self._sessions.begin() as s:
            found = await repo.get_customer(s, customer_id=a.req.customer_id)
            assert found is not None
            found.subscribed = False
        await super()._claim(a, message_id, coupon_code)


async def test_an_unsubscribe_committed_between_the_gate_and_the_claim_is_honoured(sessions, relay):
    send, pool = activities(sessions, relay, cls=UnsubscribedMeanwhile)
    cid = await customer(sessions)
    req = request(cid)
    try:
        outcome = await attempt(1).run(send.send_step, req)
    finally:
        await pool.close()
    assert (outcome.status, outcome.code) == ("skipped", "unsubscribed")
    assert relay.kept == []  # the dot was never written
    found = await row(sessions, req)
    assert found is not None and (found.status, found.reason_code) == ("skipped", "unsubscribed")


class BothPassTheGate(SendActivities):
    """Two sends to one customer both pass the gate before either takes its claim."""

    arrived: list[str] = []
    both: asyncio.Event

    async def _claim(self, a: Attempt, message_id: str, coupon_code: str | None) -> None:
        BothPassTheGate.arrived.append(a.key)
        if len(BothPassTheGate.arrived) == 2:
            BothPassTheGate.both.set()
        await BothPassTheGate.both.wait()
        await super()._claim(a, message_id, coupon_code)


async def test_two_journeys_cannot_pass_the_frequency_cap_together(sessions, relay):
    BothPassTheGate.arrived, BothPassTheGate.both = [], asyncio.Event()
    send, pool = activities(sessions, relay, cls=BothPassTheGate)
    cid = await customer(sessions)
    cap = NURTURE.frequency_cap.model_copy(update={"max_emails": 1})
    one, other = (request(cid, run=run, frequency_cap=cap) for run in ("run-a", "run-b"))
    try:
        outcomes: tuple[SendOutcome, SendOutcome] = await asyncio.gather(
            attempt(1, run_id="a").run(send.send_step, one),
            attempt(1, run_id="b").run(send.send_step, other),
        )
    finally:
        await pool.close()
    assert sorted((o.status, o.code) for o in outcomes) == [("sent", None), ("skipped", "capped")]
    assert len(relay.kept) == 1


async def test_healthz_says_smtp_paused_while_the_breaker_holds_sending(stack, http):
    relay = f"{stack.settings.smtp_target_host}:{stack.settings.smtp_port}"
    async with stack.sessions.begin() as s:
        await sends.relay_failed(s, relay=relay, reason="sender_or_relay 535 5.7.8", threshold=1)
    try:
        answer = await http.get("/healthz")
    finally:
        async with stack.sessions.begin() as s:
            await sends.relay_ok(s, relay=relay)
    assert answer.status_code == 503
    assert answer.json()["smtp"] == "paused (sender_or_relay 535 5.7.8)"
    assert (await http.get("/healthz")).json()["smtp"] == "ok"


async def test_the_breaker_state_is_one_row_per_relay(sessions):
    relay = f"127.0.0.1:{uuid.uuid4().int % 60000}"
    async with sessions.begin() as s:
        for _ in range(2):
            change = await sends.relay_failed(s, relay=relay, reason="unreachable", threshold=2)
    assert change.opened and change.failures == 2
    async with sessions.begin() as s:
        assert await sends.take_probe(
            s, relay=relay, cooldown=timedelta(0), probe_for=timedelta(minutes=1)
        )
        assert not await sends.take_probe(  # one probe at a time
            s, relay=relay, cooldown=timedelta(0), probe_for=timedelta(minutes=1)
        )
    async with sessions.begin() as s:
        assert await sends.relay_ok(s, relay=relay) is not None
        await s.execute(update(SmtpBreaker).where(SmtpBreaker.relay == relay).values(failures=0))
    async with sessions() as s:
        rows = (await s.scalars(select(SmtpBreaker).where(SmtpBreaker.relay == relay))).all()
    assert len(rows) == 1 and rows[0].opened_at is None


# -- journeys: an outage never fails a run ------------------------------------------------

GIVE_UP_SOON = {
    "send_retry": {
        "initial_interval": "1s",
        "maximum_interval": "1s",
        "backoff": 1.0,
        "give_up_after": "4s",
    },
    "steps": [
        {
            "name": "reminder_1",
            "after": "1h",
            "template": "cart_reminder_1",
            "subject": "{{ first_name }}, you left something in your cart",
        }
    ],
}


async def test_a_send_whose_retries_run_out_is_failed_with_why_and_the_journey_completes(
    make_stack,
):
    stack = await make_stack(cart_recovery=GIVE_UP_SOON)
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    stack.catcher.rcpt_answers[email_for(cid)] = "451 4.3.0 Try again later"
    try:
        handle = await abandon_cart(stack, cid, TEE)
        await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
        result = await asyncio.wait_for(handle.result(), timeout=60)
    finally:
        del stack.catcher.rcpt_answers[email_for(cid)]

    decision = result.decisions[0]
    assert (decision.status, decision.code) == ("failed", "gave_up")
    assert "451" in (decision.reason or "")
    assert stack.catcher.to(email_for(cid)) == []
    async with stack.sessions() as s:
        found = (await s.scalars(select(SendLog).where(SendLog.customer_id == cid))).all()
    assert [(r.status, r.reason_code) for r in found] == [("failed", "gave_up")]
    assert "451" in (found[0].reason_detail or "")


async def test_explain_shows_an_uncertain_send_and_says_what_it_means(stack, relay, capsys):
    from starter import ops
    from starter.__main__ import print_explanation

    send, pool = activities(stack.sessions, relay)
    cid = await customer(stack.sessions)
    relay.after_dot[f"{cid}@example.com"] = "drop"
    try:
        await attempt(1).run(send.send_step, request(cid))
    finally:
        await pool.close()

    x = await ops.explain(stack.sessions, stack.client, cid)
    assert [(row.step, row.status) for row in x.uncertain] == [("care", "uncertain")]
    print_explanation(x)
    out = capsys.readouterr().out
    assert "uncertain  uncertain: uncertain at dot" in out
    assert "1 uncertain: the final dot went out and no reply was recorded" in out


async def test_a_send_takes_two_store_transactions_the_decision_and_the_claim(sessions, relay):
    """The breaker's row is read in the decision's transaction (not one of its own), and the
    250 is recorded on the connection readied before the dot: a plain send begins two
    transactions of the store's engine, and a breaker paused before it still holds it."""
    send, pool = activities(sessions, relay)
    cid = await customer(sessions)
    req = request(cid)
    engine = sessions.kw["bind"].sync_engine
    begun: list[str] = []

    def count(conn: Any) -> None:
        begun.append("begin")

    event.listen(engine, "begin", count)
    try:
        outcome = await attempt(1).run(send.send_step, req)
    finally:
        event.remove(engine, "begin", count)
    assert outcome.status == "sent"
    assert len(begun) == 2, begun

    paused_cid = await customer(sessions)
    async with sessions.begin() as s:
        s.add(SmtpBreaker(relay=send._breaker.relay, failures=3, opened_at=utcnow()))
    try:
        with pytest.raises(ApplicationError) as paused:
            await attempt(1).run(send.send_step, request(paused_cid))
    finally:
        await pool.close()
    assert paused.value.type == PAUSED_ERROR
    assert f"{paused_cid}@example.com" not in relay.delivered()
