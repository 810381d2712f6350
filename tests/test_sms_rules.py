"""Text messages' pure rules: segments (GSM-7 and UCS-2), reply keywords, E.164 numbers,
Twilio's webhook signature, and the gate's SMS decisions (consent, STOP, quiet hours in two
zones), plus a template over SMS_MAX_SEGMENTS refused at load."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from activities.sms.compose import SmsComposer, check_sms_templates
from core.contracts import SendStepInput
from core.rules import Recipient, send_decision
from core.sending import send_step_input
from core.sms import e164, reply_keyword, segments, twilio_signature, valid_twilio_signature
from journeys.config import JourneyConfigError, NurtureConfig, load_journey
from settings import ROOT
from testkit.stack import copy_journeys


@pytest.mark.parametrize(
    ("text", "encoding", "count"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),  # 153 per segment once split
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # an extension character takes two septets
        ("€" * 81, "GSM-7", 2),
        ("Your order is on its way. Reply STOP to opt out", "GSM-7", 1),
        ("你" * 70, "UCS-2", 1),
        ("你" * 71, "UCS-2", 2),  # 67 per segment once split
        ("你" * 134, "UCS-2", 2),
        ("你" * 135, "UCS-2", 3),
        ("a" * 69 + "😀", "UCS-2", 2),  # an emoji is a surrogate pair: 71 units
    ],
)
def test_segment_counts_in_english_and_chinese(text: str, encoding: str, count: int) -> None:
    got = segments(text)
    assert (got.encoding, got.count) == (encoding, count)


def test_a_chinese_greeting_is_ucs2_and_counts_its_characters() -> None:
    text = "生日快乐！送您一张八折优惠券，七天内有效。回复T退订"  # noqa: RUF001
    got = segments(text)
    assert got.encoding == "UCS-2" and got.units == len(text) and got.count == 1


@pytest.mark.parametrize(
    ("body", "meaning"),
    [
        ("STOP", "opt_out"),
        (" stop. ", "opt_out"),
        ("Unsubscribe", "opt_out"),
        ("T", "opt_out"),
        ("td", "opt_out"),
        ("退订", "opt_out"),
        ("退订。", "opt_out"),
        ("START", "opt_in"),
        ("unstop", "opt_in"),
        ("stop sending me coupons", None),
        ("thanks!", None),
    ],
)
def test_reply_keywords(body: str, meaning: str | None) -> None:
    assert reply_keyword(body) == meaning


def test_numbers_are_stored_in_e164_and_bad_ones_say_why() -> None:
    assert e164("+49 (151) 2345-6789") == "+4915123456789"
    assert e164("+1 415 555 2671") == "+14155552671"
    for bad in ("12", "+49 12", "0151 23456789", "call me"):
        with pytest.raises(ValueError, match="phone number"):
            e164(bad)


def test_the_signature_is_twilios_published_example() -> None:
    """twilio-python's RequestValidator test vector (the same in its PHP and Ruby SDKs)."""
    params = {
        "AccountSid": "AC9a9f9392lad99kla0sklakjs90j092j3",
        "ApiVersion": "2010-04-01",
        "CallSid": "CAd800bb12c0426a7ea4230e492fef2a4f",
        "CallStatus": "ringing",
        "Called": "+15306384866",
        "CalledCity": "OAKLAND",
        "CalledCountry": "US",
        "CalledState": "CA",
        "CalledZip": "94612",
        "Caller": "+15306666666",
        "CallerCity": "SOUTH LAKE TAHOE",
        "CallerCountry": "US",
        "CallerName": "CA Wireless Call",
        "CallerState": "CA",
        "CallerZip": "89449",
        "Direction": "inbound",
        "From": "+15306666666",
        "FromCity": "SOUTH LAKE TAHOE",
        "FromCountry": "US",
        "FromState": "CA",
        "FromZip": "89449",
        "To": "+15306384866",
        "ToCity": "OAKLAND",
        "ToCountry": "US",
        "ToState": "CA",
        "ToZip": "94612",
    }
    url, token = "http://www.postbin.org/1ed898x", "1c892n40nd03kdnc0112slzkl3091j20"
    assert twilio_signature(url, params, token) == "fF+xx6dTinOaCdZ0aIeNkHr/ZAA="
    assert valid_twilio_signature(url, params, token, "fF+xx6dTinOaCdZ0aIeNkHr/ZAA=")
    assert not valid_twilio_signature(
        url, {**params, "Digits": "1"}, token, "fF+xx6dTinOaCdZ0aIeNkHr/ZAA="
    )
    assert not valid_twilio_signature(url, params, token, None)


# -- the gate ----------------------------------------------------------------------------------

NURTURE = load_journey("new_customer_nurture", ROOT / "journeys", NurtureConfig)


def text_request(at: datetime, step: str = "thanks_sms") -> SendStepInput:
    return send_step_input(
        NURTURE,
        NURTURE.step(step),
        workflow_id="new-customer-nurture:c-1",
        run_chain_id="run-1",
        customer_id="c-1",
        entered_at=at,
        now=at,
    )


def recipient(zone: str, **changes: object) -> Recipient:
    values: dict[str, object] = {
        "email_problem": None,
        "subscribed": True,
        "unsubscribed_journeys": (),
        "suppression": None,
        "timezone": zone,
        "phone": "+4915123456789",
        "sms_consent": True,
    }
    return Recipient(**{**values, **changes})  # type: ignore[arg-type]


def test_quiet_hours_for_texts_in_two_zones_and_stricter_than_email() -> None:
    at = datetime(2026, 6, 1, 18, 30, tzinfo=UTC)  # 20:30 in Berlin, 14:30 in New York
    berlin = send_decision(text_request(at), recipient("Europe/Berlin"))
    new_york = send_decision(text_request(at), recipient("America/New_York"))

    assert berlin is not None and berlin.status == "deferred" and berlin.code == "quiet_hours"
    assert berlin.retry_at == datetime(2026, 6, 2, 7, 0, tzinfo=UTC)  # 09:00 in Berlin
    assert new_york is None
    # The thank-you email at the same minute in Berlin goes out (email's quiet hours: 21-08).
    email = text_request(at, step="thanks")
    assert send_decision(email, recipient("Europe/Berlin")) is None
    # A transactional text keeps the quiet hours too.
    shipping = send_decision(text_request(at, "shipping_sms"), recipient("Europe/Berlin"))
    assert shipping is not None and shipping.code == "quiet_hours"


def test_texts_need_a_number_consent_and_no_stop_whatever_email_says() -> None:
    at = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    req = text_request(at)
    codes = {
        "no phone": recipient("UTC", phone=None),
        "no consent": recipient("UTC", sms_consent=False),
        "stop": recipient("UTC", sms_suppression="stop"),
        "email unsubscribed": recipient("UTC", subscribed=False, suppression="unsubscribed"),
        "bad email": recipient("UTC", email_problem="not an address"),
    }
    got = {
        k: (d.code, d.detail) if (d := send_decision(req, who)) else None
        for k, who in codes.items()
    }
    assert got == {
        "no phone": ("no_phone", None),
        "no consent": ("no_sms_consent", None),
        "stop": ("suppressed", "sms: stop"),
        "email unsubscribed": None,  # an email unsubscribe stops no text
        "bad email": None,
    }
    transactional_after_stop = send_decision(
        text_request(at, "shipping_sms"), recipient("UTC", sms_suppression="stop")
    )
    assert transactional_after_stop is not None and transactional_after_stop.code == "suppressed"


def test_a_text_template_over_the_segment_limit_is_refused_at_load(tmp_path: Path) -> None:
    journeys = copy_journeys(tmp_path / "journeys")
    (journeys / "templates" / "nurture_thanks.sms.j2").write_text(
        "{{ shop.name }}: 谢谢您的订单。" + "我们很高兴为您服务。" * 20 + "{{ shop_url }}\n"
    )
    composer = SmsComposer(journeys / "templates", max_segments=3, short_base="https://s.test")
    with pytest.raises(JourneyConfigError) as refused:
        check_sms_templates(journeys, composer)
    message = str(refused.value)
    assert "nurture_thanks.sms.j2" in message and "5 segments" in message
    assert "SMS_MAX_SEGMENTS = 3" in message
