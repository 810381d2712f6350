"""SMTP pool against the real catcher: connection reuse, classification of answers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from activities.mailer import RecipientRejected, SmtpPool, TemporarySmtpError
from activities.render import Rendered, build_message
from devstack.catcher import MailCatcher, free_port


def _message(to: str, n: int):
    return build_message(
        rendered=Rendered(subject=f"Message {n}", text=f"text {n}", html=f"<p>html {n}</p>"),
        mail_from="Shop <shop@example.com>",
        to_email=to,
        to_name="Ada",
        message_id=f"<m{n}@example.com>",
        date=datetime.now(UTC),
        unsubscribe_url="https://shop.example.com/u/token",
    )


async def test_many_messages_share_a_few_reused_connections(tmp_path):
    catcher = MailCatcher(maildir=tmp_path / "mail").start()
    pool = SmtpPool(host=catcher.host, port=catcher.port, size=2)
    try:
        await asyncio.gather(*(pool.send(_message("reuse@example.com", n)) for n in range(30)))
        await pool.send(_message("reuse@example.com", 30))
    finally:
        await pool.close()
        catcher.stop()
    assert len(catcher.to("reuse@example.com")) == 31
    assert catcher.connections <= 2
    assert pool.connections_opened <= 2
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 31  # kept on disk too


async def test_refusals_are_told_apart_from_outages():
    catcher = MailCatcher().start()
    catcher.rcpt_answers["gone@example.com"] = "550 5.1.1 No such user"
    catcher.rcpt_answers["busy@example.com"] = "451 4.3.0 Try again later"
    pool = SmtpPool(host=catcher.host, port=catcher.port, size=1)
    try:
        with pytest.raises(RecipientRejected) as rejected:
            await pool.send(_message("gone@example.com", 1))
        assert rejected.value.code == 550
        with pytest.raises(TemporarySmtpError, match="451"):
            await pool.send(_message("busy@example.com", 2))
        await pool.send(_message("fine@example.com", 3))  # the connection survived both
        assert catcher.connections == 1
    finally:
        await pool.close()
        catcher.stop()

    down = SmtpPool(host="127.0.0.1", port=free_port(), size=1, timeout=2)
    with pytest.raises(TemporarySmtpError):
        await down.send(_message("fine@example.com", 4))
