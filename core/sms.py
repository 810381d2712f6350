"""What a text message is, as the medium and the carriers define it: phone numbers in E.164,
segment counts (3GPP TS 23.038 alphabets), the keywords that opt a number out or back in
(CTIA's and Twilio's lists, plus Chinese), the provider error codes that end a number, and
the signature Twilio puts on its webhooks. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import phonenumbers

Channel = Literal["email", "sms"]
CHANNELS: tuple[Channel, ...] = ("email", "sms")

# -- phone numbers ---------------------------------------------------------------------------


def e164(text: str, region: str | None = None) -> str:
    """``"+49 30 1234567"`` -> ``"+49301234567"``. Without ``region`` the number must be in
    international form (a leading ``+``). Raises ValueError saying why for anything that is
    not a valid number (phonenumbers, Google's libphonenumber metadata)."""
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(
            f"not a phone number ({exc._msg}); give it in international form, e.g. +4915112345678"
        ) from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number for its country code")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


# -- segments ----------------------------------------------------------------------------------

# GSM 03.38 default alphabet and its extension table (each extension character takes two
# septets: an escape, then the character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
# Characters per message: one segment, or per segment of a concatenated message (the user
# data header takes the rest).
GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67


@dataclass(frozen=True)
class Segments:
    """How a text goes over the air: its encoding, its length in that encoding's units
    (septets for GSM-7, UTF-16 code units for UCS-2) and the number of segments."""

    encoding: Literal["GSM-7", "UCS-2"]
    units: int
    count: int


def segments(text: str) -> Segments:
    """Segments of ``text``: GSM-7 when every character is in the GSM 03.38 alphabet (160 in
    one segment, 153 per segment beyond), else UCS-2 (70, 67 per segment; a character
    outside the BMP, an emoji, takes two units). Chinese text is UCS-2. A segment boundary
    never splits an escape pair or a surrogate pair, as handsets and Twilio count."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text):
        widths = [2 if c in GSM7_EXTENDED else 1 for c in text]
        single, multi, encoding = GSM7_SINGLE, GSM7_MULTI, "GSM-7"
    else:
        widths = [2 if ord(c) > 0xFFFF else 1 for c in text]
        single, multi, encoding = UCS2_SINGLE, UCS2_MULTI, "UCS-2"
    units = sum(widths)
    if units <= single:
        return Segments(encoding, units, 1 if units else 0)  # type: ignore[arg-type]
    count, used = 1, 0
    for w in widths:
        if used + w > multi:
            count, used = count + 1, 0
        used += w
    return Segments(encoding, units, count)  # type: ignore[arg-type]


# -- replies: opt-out and opt-in keywords ---------------------------------------------------

# A reply that is one of these words (case, spaces and trailing punctuation aside) opts the
# number out of every text at once: CTIA's list as Twilio honours it, and the Chinese
# carriers' "T" / "TD" / 退订 (unsubscribe) and friends.
OPT_OUT_WORDS = frozenset(
    {
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "OPTOUT",
        "OPT-OUT",
        "REVOKE",
        "T",
        "TD",
        "N",
        "退订",
        "退定",
        "取消",
        "取消订阅",
        "退出",
        "不要",
    }
)
OPT_IN_WORDS = frozenset({"START", "UNSTOP", "YES", "SUBSCRIBE", "订阅", "开始"})
_TRAILING = " \t\r\n.!\u3002\uff01"  # and the ideographic full stop, fullwidth "!"


def reply_keyword(body: str) -> Literal["opt_out", "opt_in"] | None:
    """What a reply means: an opt-out, an opt-in, or nothing (None)."""
    word = body.strip().strip(_TRAILING).upper()
    if word in OPT_OUT_WORDS:
        return "opt_out"
    if word in OPT_IN_WORDS:
        return "opt_in"
    return None


# -- provider errors -------------------------------------------------------------------------

# Twilio error codes after which a number takes no more texts from us (suppressed): it is
# no valid mobile number, a landline, or opted out at the carrier. 30003 (unreachable: the
# handset is off or out of coverage) and 30005 (unknown or inactive for now) are temporary.
PERMANENT_ERRORS: Mapping[str, str] = {
    "21211": "invalid_number",
    "21614": "not_mobile",
    "21610": "opted_out_at_carrier",
    "30006": "landline",
    "30004": "blocked",
    "30007": "carrier_filtered",
}
# SMS suppressions, strongest first (the number shows its strongest).
SMS_SUPPRESSION_PRECEDENCE = (
    "invalid_number",
    "not_mobile",
    "landline",
    "opted_out_at_carrier",
    "blocked",
    "stop",
    "carrier_filtered",
)
# What a STOP reply records: lifted by START (or a new consent); the others never are.
STOP = "stop"
LIFTED_BY_START = (STOP, "opted_out_at_carrier")


def strongest(reasons: Iterable[str]) -> str | None:
    rank = {r: i for i, r in enumerate(SMS_SUPPRESSION_PRECEDENCE)}
    return min(reasons, key=lambda r: (rank.get(r, len(rank)), r), default=None)


# -- the opt-out hint --------------------------------------------------------------------------

OPT_OUT_HINTS: Mapping[str, str] = {
    "en": "Reply STOP to opt out",
    "de": "Abmelden: STOP antworten",
    "fr": "STOP pour vous désabonner",
    "zh": "回复T退订",
}


def with_opt_out_hint(text: str, hint: str) -> str:
    """``text`` ending with ``hint`` on its own line (once)."""
    text = text.rstrip()
    return text if not hint or text.endswith(hint) else f"{text}\n{hint}"


# -- Twilio's webhook signature ----------------------------------------------------------------


def twilio_signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """``X-Twilio-Signature`` as Twilio computes it ("Webhooks security"): the full URL of
    the request, then each POST parameter's name and value, sorted by name, concatenated;
    HMAC-SHA1 with the auth token as key; base64."""
    data = url + "".join(k + params[k] for k in sorted(params))
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode("ascii")


def valid_twilio_signature(
    url: str, params: Mapping[str, str], auth_token: str, signature: str | None
) -> bool:
    """True when ``signature`` is Twilio's for this request (compared in constant time)."""
    if not signature or not auth_token:
        return False
    expected = twilio_signature(url, params, auth_token)
    return hmac.compare_digest(expected.encode(), signature.encode())
