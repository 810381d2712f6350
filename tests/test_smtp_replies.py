"""What each SMTP reply or fault means for a send, against a real SMTP server (aiosmtpd) that
answers given codes at MAIL, RCPT and after the final dot, drops the connection at DATA, in
the middle of the message or right after the final dot, or never answers the dot."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest

from activities.mailer import (
    DeliveryUncertain,
    PermanentSmtpError,
    RecipientRejected,
    SmtpFailure,
    SmtpPool,
    TemporarySmtpError,
)
from activities.render import Rendered, build_message
from activities.smtp_replies import classify
from devstack.catcher import free_port
from testkit.relay import Relay


@pytest.fixture
def relay():
    server = Relay()
    yield server
    server.stop()


def _message(to: str, *, sender: str = "shop@example.com", n: int = 1) -> EmailMessage:
    return build_message(
        rendered=Rendered(subject=f"Your cart {n}", text=f"text {n}", html=f"<p>html {n}</p>"),
        mail_from=f"Shop <{sender}>",
        to_email=to,
        to_name="Ada",
        message_id=f"<m{n}@example.com>",
        date=datetime.now(UTC),
        unsubscribe_url="https://shop.example.com/u/token",
    )


async def _eventually(check: Any) -> None:
    """Poll: the relay runs in its own thread."""
    for _ in range(150):
        if check():
            return
        await asyncio.sleep(0.02)
    pytest.fail("condition not met within 3 s")


RCPT_REPLIES = [
    ("550 5.1.1 <x>: Recipient address rejected: User unknown", "bad_mailbox"),
    ("550 No such user here", "bad_mailbox"),  # bare 550 at RCPT: the mailbox
    ("551 User not local; please try <forward@example.org>", "bad_mailbox"),
    ("553 Requested action not taken: mailbox name not allowed", "bad_mailbox"),
    ("550 5.2.1 Mailbox disabled, not accepting messages", "bad_mailbox"),
    ("554 5.7.1 <x>: Relay access denied", "sender_or_relay"),
    ("554 Relay access denied", "sender_or_relay"),
    ("550 Relaying denied", "sender_or_relay"),  # bare 550 that names the relay, not the mailbox
    ("530 5.7.0 Authentication required", "sender_or_relay"),
    ("535 5.7.8 Authentication credentials invalid", "sender_or_relay"),
    (
        "550 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org",
        "sender_or_relay",
    ),
    ("553 5.1.8 <shop@example.com>: Sender address rejected: Domain not found", "sender_or_relay"),
    ("550 5.3.0 Mail system error", "sender_or_relay"),
    ("550 5.4.1 Recipient address rejected: Access denied", "sender_or_relay"),
    ("452 4.2.2 Mailbox full", "soft"),
    ("552 5.2.2 Mailbox full", "soft"),
    ("552 Requested mail action aborted: exceeded storage allocation", "soft"),
    ("451 4.3.0 Try again later", "soft"),
    ("450 Mailbox busy", "soft"),
    ("421 4.7.0 Too many connections, closing transmission channel", "sender_or_relay"),
]
KIND_CLASS = {
    "bad_mailbox": RecipientRejected,
    "soft": TemporarySmtpError,
    "sender_or_relay": TemporarySmtpError,
    "unreachable": TemporarySmtpError,
    "bad_message": PermanentSmtpError,
    "uncertain": DeliveryUncertain,
}


@pytest.mark.parametrize(("reply", "kind"), RCPT_REPLIES)
async def test_a_reply_at_rcpt_is_read_by_its_basic_and_enhanced_code(relay, reply, kind):
    relay.at_rcpt["ada@example.com"] = reply
    pool = SmtpPool(host="127.0.0.1", port=relay.port, size=1)
    dots: list[int] = []
    try:
        with pytest.raises(SmtpFailure) as failed:
            await pool.send(_message("ada@example.com"), before_dot=lambda: _note(dots))
        assert failed.value.kind == kind
        assert type(failed.value) is KIND_CLASS[kind]
        assert failed.value.stage == "rcpt"
        assert failed.value.code == int(reply[:3])
        assert failed.value.relay_side == (kind == "sender_or_relay")
        assert not dots  # nothing reached the point of the final dot
        await pool.send(_message("fine@example.com", n=2))
        if not reply.startswith("421"):
            assert pool.connections_opened == 1  # a refusal leaves the connection usable
    finally:
        await pool.close()
    assert relay.kept and len(relay.kept) == 1


AFTER_DOT_REPLIES = [
    ("554 5.7.1 Message rejected as spam", "sender_or_relay"),
    ("550 5.7.26 Unauthenticated email is not accepted from this domain", "sender_or_relay"),
    ("554 Transaction failed", "sender_or_relay"),  # bare: nothing says the mailbox is bad
    ("552 5.3.4 Message size exceeds fixed limit", "bad_message"),
    ("554 5.6.0 Message content rejected", "bad_message"),
    ("550 5.1.1 User unknown", "bad_mailbox"),  # a late recipient check, still one recipient
    ("451 4.3.0 Local error in processing", "soft"),
    ("421 4.7.0 Service shutting down", "sender_or_relay"),
]


@pytest.mark.parametrize(("reply", "kind"), AFTER_DOT_REPLIES)
async def test_a_reply_to_the_final_dot_is_a_known_outcome_not_an_uncertain_one(relay, reply, kind):
    relay.after_dot["ada@example.com"] = reply
    pool = SmtpPool(host="127.0.0.1", port=relay.port, size=1)
    dots: list[int] = []
    try:
        with pytest.raises(SmtpFailure) as failed:
            await pool.send(_message("ada@example.com"), before_dot=lambda: _note(dots))
    finally:
        await pool.close()
    assert (failed.value.kind, failed.value.stage) == (kind, "dot")
    assert type(failed.value) is KIND_CLASS[kind]
    assert dots == [1]


MAIL_REPLIES = [
    ("553 5.1.8 <s>: Sender address rejected: Domain not found", "sender_or_relay"),
    ("550 5.1.1 <s>: Sender address rejected: User unknown", "sender_or_relay"),
    ("550 Sender rejected", "sender_or_relay"),  # never a bounce of the recipient
    ("530 5.7.0 Must issue a STARTTLS command first", "sender_or_relay"),
    ("452 4.3.1 Insufficient system storage", "soft"),
    ("552 5.3.4 Message size exceeds fixed maximum message size", "bad_message"),
]


@pytest.mark.parametrize(("reply", "kind"), MAIL_REPLIES)
async def test_a_refusal_at_mail_is_about_the_sender_never_the_recipient(relay, reply, kind):
    relay.at_mail["news@example.com"] = reply
    pool = SmtpPool(host="127.0.0.1", port=relay.port, size=1)
    try:
        with pytest.raises(SmtpFailure) as failed:
            await pool.send(_message("ada@example.com", sender="news@example.com"))
        await pool.send(_message("ada@example.com", n=2))  # same connection, reset
        assert pool.connections_opened == 1
    finally:
        await pool.close()
    assert (failed.value.kind, failed.value.stage) == (kind, "mail")


async def _note(dots: list[int]) -> None:
    dots.append(len(dots) + 1)


async def test_before_dot_runs_once_after_the_relay_took_everything_but_the_dot(relay):
    pool = SmtpPool(host="127.0.0.1", port=relay.port, size=1)
    seen: list[int] = []

    async def before_dot() -> None:
        seen.append(len(relay.kept))  # the relay has not got the message yet

    try:
        reply = await pool.send(_message("ada@example.com"), before_dot=before_dot)
    finally:
        await pool.close()
    assert seen == [0]
    assert (reply.code, str(reply.enhanced)) == (250, "2.0.0")
    assert "queued as 4XyZ" in reply.text
    assert len(relay.kept) == 1


async def test_a_drop_right_after_the_final_dot_is_uncertain_and_the_relay_has_the_mail(relay):
    relay.after_dot["ada@example.com"] = "drop"
    pool = SmtpPool(host="127.0.0.1", port=relay.port, size=1)
    try:
        async with pool.connection() as conn:
            with pytest.raises(DeliveryUncertain) as failed:
                await conn.send(_message("ada@example.com"))
            assert conn.dot_written
        assert (failed.value.kind, failed.value.stage) == ("uncertain", "dot")
        await pool.send(_message("fine@example.com", n=2))  # a fresh connection
        assert pool.connections_opened == 2
    finally:
        await pool.close()
    assert len(relay.kept) == 2  # the "uncertain" one did arrive


async def test_no_reply_to_the_final_dot_within_the_timeout_is_uncertain(relay):
    relay.after_dot["ada@example.com"] = "hang"
    pool = SmtpPool(host="127.0.0.1", port=relay.port, size=1, reply_timeout=0.3)
    try:
        with pytest.raises(DeliveryUncertain) as failed:
            await pool.send(_message("ada@example.com"))
    finally:
        await pool.close()
    assert "Timed out" in str(failed.value)
    assert len(relay.kept) == 1


async def test_a_drop_at_the_data_command_is_safe_to_retry(relay):
    relay.drop_at_data.add("ada@example.com")
    pool = SmtpPool(host="127.0.0.1", port=relay.port, size=1)
    dots: list[int] = []
    try:
        async with pool.connection() as conn:
            with pytest.raises(TemporarySmtpError) as failed:
                await conn.send(_message("ada@example.com"), before_dot=lambda: _note(dots))
            assert not conn.dot_written
    finally:
        await pool.close()
    assert (failed.value.kind, failed.value.stage) == ("unreachable", "data")
    assert not dots
    assert relay.kept == []


async def test_a_drop_in_the_middle_of_the_message_before_the_dot_is_safe_to_retry(relay):
    pool = SmtpPool(host="127.0.0.1", port=relay.port, size=1)

    async def relay_hangs_up() -> None:  # the message text is out; the dot is not
        relay.hang_up_all()
        await _eventually(lambda: not conn.client.is_connected)

    try:
        async with pool.connection() as conn:
            with pytest.raises(TemporarySmtpError) as failed:
                await conn.send(_message("ada@example.com"), before_dot=relay_hangs_up)
            assert not conn.dot_written
        assert (failed.value.kind, failed.value.stage) == ("unreachable", "data")
        await pool.send(_message("ada@example.com", n=2))  # the retry goes through once
    finally:
        await pool.close()
    assert len(relay.kept) == 1


async def test_a_failing_before_dot_sends_nothing_and_closes_the_connection(relay):
    pool = SmtpPool(host="127.0.0.1", port=relay.port, size=1)

    async def claim_lost() -> None:
        raise RuntimeError("the claim belongs to another attempt")

    try:
        with pytest.raises(RuntimeError, match="another attempt"):
            await pool.send(_message("ada@example.com"), before_dot=claim_lost)
        await pool.send(_message("ada@example.com", n=2))
        assert pool.connections_opened == 2  # the half-sent one was not reused
    finally:
        await pool.close()
    await _eventually(lambda: relay.open_sessions() == 0)
    assert len(relay.kept) == 1


async def test_cancellation_tells_before_the_dot_from_after_it(relay):
    relay.after_dot["late@example.com"] = "hang"
    pool = SmtpPool(host="127.0.0.1", port=relay.port, size=2)
    before = asyncio.Event()

    async def wait_forever() -> None:
        before.set()
        await asyncio.Event().wait()

    try:
        async with pool.connection() as conn:
            task = asyncio.create_task(
                conn.send(_message("ada@example.com"), before_dot=wait_forever)
            )
            await before.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not conn.dot_written  # cancelled before the dot: nothing at the relay
        async with pool.connection() as conn:
            task = asyncio.create_task(conn.send(_message("late@example.com", n=2)))
            await _eventually(lambda: len(relay.kept) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert conn.dot_written  # cancelled waiting for the reply: outcome unknown
    finally:
        await pool.close()
    await _eventually(lambda: relay.open_sessions() == 0)
    assert len(relay.kept) == 1


async def test_a_refused_login_is_a_relay_problem_and_leaves_no_connection_open():
    relay = Relay(refuse_logins=True)
    pool = SmtpPool(host="127.0.0.1", port=relay.port, username="shop", password="old", size=1)
    try:
        for _ in range(2):  # the slot is given back too
            with pytest.raises(TemporarySmtpError) as failed:
                async with pool.connection():
                    pytest.fail("no connection should be handed out")
            assert (failed.value.kind, failed.value.stage, failed.value.code) == (
                "sender_or_relay",
                "connect",
                535,
            )
            await _eventually(lambda: relay.open_sessions() == 0)
        assert pool.connections_opened == 0
    finally:
        await pool.close()
        relay.stop()


async def test_a_relay_that_refuses_connections_is_unreachable_before_any_claim():
    pool = SmtpPool(host="127.0.0.1", port=free_port(), size=1, timeout=2)
    with pytest.raises(TemporarySmtpError) as failed:
        async with pool.connection():
            pytest.fail("no connection should be handed out")
    assert (failed.value.kind, failed.value.stage) == ("unreachable", "connect")
    with pytest.raises(TemporarySmtpError):
        await pool.probe()


async def test_a_connection_is_had_before_the_caller_goes_on(relay):
    pool = SmtpPool(host="127.0.0.1", port=relay.port, size=1)
    order: list[str] = []
    first_holds = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with pool.connection() as conn:
            order.append("first has a connection")
            first_holds.set()
            await release_first.wait()
            await conn.send(_message("ada@example.com"))
        order.append("first gave it back")

    async def second() -> None:
        await first_holds.wait()
        async with pool.connection() as conn:
            order.append("second has a connection")  # where a claim would be taken
            await conn.send(_message("bob@example.com", n=2))

    try:
        tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
        await first_holds.wait()
        await asyncio.sleep(0.1)
        assert order == ["first has a connection"]  # second waits with no claim held
        release_first.set()
        await asyncio.gather(*tasks)
        await pool.probe()
    finally:
        await pool.close()
    assert order == ["first has a connection", "first gave it back", "second has a connection"]
    assert pool.connections_opened == 1


@pytest.mark.parametrize(
    ("stage", "reply", "kind"),
    [
        (
            "rcpt",
            "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
            "sender_or_relay",
        ),
        ("rcpt", "550 sorry, no mailbox here by that name (#5.1.1)", "bad_mailbox"),
        ("rcpt", "550 4.2.2 class disagrees with the code: read as bare", "bad_mailbox"),
        ("rcpt", "550 5.7.17 Mailbox owner has changed", "bad_mailbox"),  # RFC 7293
        ("rcpt", "550 5.1.0 <s>: Sender address rejected: User unknown", "sender_or_relay"),
        ("rcpt", "550 5.0.0 <x>: Recipient address rejected", "bad_mailbox"),
        ("rcpt", "556 5.1.10 Recipient address has null MX", "bad_mailbox"),  # RFC 7505
        ("rcpt", "454 4.7.0 Temporary authentication failure", "sender_or_relay"),
        ("rcpt", "450 4.7.1 Client host rejected: try again later", "sender_or_relay"),
        ("rcpt", "452 4.5.3 Too many recipients", "soft"),
        ("connect", "554 No SMTP service here", "sender_or_relay"),
        ("connect", "550 5.1.1 mailbox unknown", "sender_or_relay"),
        ("dot", "552 Too much mail data", "bad_message"),
        ("dot", "550 5.2.3 Message length exceeds administrative limit", "bad_message"),
        ("data", "554 5.5.1 Error: no valid recipients", "sender_or_relay"),
    ],
)
def test_classification_of_less_common_replies(stage, reply, kind):
    code, _, text = reply.partition(" ")
    assert classify(stage, int(code), text) == kind
