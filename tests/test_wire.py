"""The bytes a real SMTP server receives: headers that mailbox providers read without decoding
(RFC 2369 / RFC 8058 unsubscribe, Message-ID) leave as written, lines stay within RFC 5322."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from activities.mailer import SmtpPool
from activities.render import Rendered, build_message
from core.links import Links
from devstack.catcher import MailCatcher

SHOP = Links(base_url="https://mail.shop-with-a-long-name.example.com/email", secret="k" * 32)
# A signed token for a long customer id and journey: the URL is ~230 characters.
UNSUBSCRIBE = SHOP.unsubscribe(
    customer_id="cus_01HZX3K9Q2W8E5R7T6Y4U1I0PA-eu-west-shop-7f3a9c2e-5b1d-4e8f-a6c0",
    journey="new_customer_nurture",
)
MESSAGE_ID = "<5f1c0a8e9b3d7f2a6c4e1b0d9a8f7e6d5c4b3a29@shop-with-a-long-name.example.com>"
RENDERED = Rendered(
    subject="Ada, your cart is still waiting — finish your order before the 20 % code expires",
    text="Hi Ada,\n.\n.. a line that starts with a dot\nYour cart: 2 Tea pots — 39,90 €\n",
    html="<p>Hi Ada,</p>" + "<p>" + "a long paragraph " * 80 + "</p>\n.\n",
)


def _message(*, to: str = "ada@example.com", headers: dict[str, str] | None = None) -> EmailMessage:
    return build_message(
        rendered=RENDERED,
        mail_from="Shop With A Long Name <news@shop-with-a-long-name.example.com>",
        to_email=to,
        to_name="Ada Lövelace",
        message_id=MESSAGE_ID,
        date=datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
        unsubscribe_url=UNSUBSCRIBE,
        headers={"X-Journey": "new_customer_nurture/thanks", **(headers or {})},
    )


async def _received(*messages: EmailMessage) -> list[bytes]:
    """What the SMTP server got, byte for byte."""
    catcher = MailCatcher().start()
    pool = SmtpPool(host=catcher.host, port=catcher.port, size=1)
    try:
        for message in messages:
            await pool.send(message)
    finally:
        await pool.close()
        catcher.stop()
    return catcher.raw


def _header_fields(raw: bytes) -> dict[bytes, bytes]:
    """Each header field as it is on the wire, folding included, by lowercase name."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    fields: dict[bytes, bytes] = {}
    name = b""
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            fields[name] += b"\r\n" + line
        else:
            name = line.split(b":", 1)[0].lower()
            fields[name] = line
    return fields


def test_unsubscribe_url_is_long_enough_to_have_been_encoded_before():
    assert len(UNSUBSCRIBE) > 200
    assert len(f"List-Unsubscribe: <{UNSUBSCRIBE}>") > 78


async def test_unsubscribe_and_message_id_leave_as_written_without_encoded_words():
    (raw,) = await _received(_message())
    fields = _header_fields(raw)
    for name in (b"list-unsubscribe", b"list-unsubscribe-post", b"message-id"):
        assert b"=?" not in fields[name], fields[name]
    assert fields[b"list-unsubscribe"] == b"List-Unsubscribe: <" + UNSUBSCRIBE.encode() + b">"
    assert fields[b"list-unsubscribe-post"] == b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    assert fields[b"message-id"] == b"Message-ID: " + MESSAGE_ID.encode()


async def test_a_parser_that_decodes_nothing_reads_the_clean_url():
    (raw,) = await _received(_message())
    plain = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert plain["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert plain["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert plain["Message-ID"] == MESSAGE_ID


async def test_every_line_is_within_rfc_5322_limits_and_7_bit():
    (raw,) = await _received(_message())
    assert raw.isascii()  # no 8BITMIME needed from any relay
    lines = raw.split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line for line in lines)  # CRLF only
    assert max(len(line) for line in lines) <= 998
    long = {line.split(b":", 1)[0] for line in lines if len(line) > 78}
    # Only single tokens too long to break (RFC 5322 §2.1.1 says SHOULD to 78, MUST to 998).
    assert long == {b"List-Unsubscribe", b"Message-ID"}
    for line in lines:
        if len(line) > 78:
            assert b" " not in line.split(b": ", 1)[1]


async def test_only_the_top_level_says_mime_version():
    (raw,) = await _received(_message())
    assert raw.count(b"MIME-Version:") == 1
    assert (
        raw.startswith(b"From:")
        and b"\r\nMIME-Version: 1.0\r\n" in raw.split(b"\r\n\r\n")[0] + b"\r\n"
    )


async def test_what_is_decoded_is_what_was_rendered():
    (raw,) = await _received(_message())
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == RENDERED.subject
    assert msg["To"].addresses[0].display_name == "Ada Lövelace"
    # Canonical CRLF line ends (RFC 2046 §4.1.1) read back as the text was; dots not stuffed.
    for subtype, rendered in (("plain", RENDERED.text), ("html", RENDERED.html)):
        body = msg.get_body((subtype,))
        assert body is not None
        assert body.get_content().replace("\r\n", "\n") == rendered


async def test_long_header_values_fold_only_at_their_spaces():
    campaign = " ".join(f"spring-sale-segment-{n}" for n in range(12))
    (raw,) = await _received(_message(headers={"X-Campaign": campaign}))
    field = _header_fields(raw)[b"x-campaign"]
    assert b"=?" not in field
    assert all(len(line) <= 78 for line in field.split(b"\r\n"))
    assert field.count(b"\r\n") >= 2
    unfolded = field.replace(b"\r\n", b"").decode()  # RFC 5322 §2.2.3 unfolding
    assert unfolded == f"X-Campaign: {campaign}"


async def test_a_message_parsed_back_is_sent_with_the_same_clean_header():
    (first,) = await _received(_message())
    parsed = email.message_from_bytes(first, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    (again,) = await _received(parsed)
    assert _header_fields(again)[b"list-unsubscribe"] == _header_fields(first)[b"list-unsubscribe"]


def test_an_unsubscribe_url_that_cannot_go_out_as_written_is_refused():
    with pytest.raises(ValueError, match="ASCII URI"):
        build_message(
            rendered=RENDERED,
            mail_from="shop@example.com",
            to_email="ada@example.com",
            to_name=None,
            message_id=MESSAGE_ID,
            date=datetime(2026, 3, 1, tzinfo=UTC),
            unsubscribe_url="https://shop.example.com/abmelden/jürgen",
        )
