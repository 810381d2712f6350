"""What an SMTP failure means for the send: one ``FailureKind`` from a closed set.

A reply is read by its basic code (RFC 5321 §4.2) and, where the relay gives one, its
enhanced status code (RFC 3463, registry RFC 5248): ``550 5.1.1`` is a mailbox that does not
exist, ``554 5.7.1`` is the relay refusing *us*. Only a bad mailbox ever suppresses an
address; anything about the sender, the relay, its policy or our credentials defers the send.
Pure: the mailer raises the failures (activities/mailer.py); what a send of each kind becomes
is in docs/decisions/0007-smtp-replies.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

FailureKind = Literal[
    "bad_mailbox",  # the recipient's mailbox does not or cannot exist: hard bounce, suppress
    "soft",  # a transient condition (4yz, mailbox full): try again later
    "sender_or_relay",  # sender, relay, policy, reputation, credentials: defer, never suppress
    "unreachable",  # no usable connection, or it failed before the final dot: nothing was sent
    "bad_message",  # this message will not be taken as it is (size, content): do not retry
    "uncertain",  # the final dot went out and no reply came: the relay may have the message
]
ReplyKind = Literal["bad_mailbox", "soft", "sender_or_relay", "bad_message"]
# Where in the session a reply or a failure came: greeting/EHLO/AUTH, MAIL, RCPT, the DATA
# command (before any content), the reply to the final dot.
Stage = Literal["connect", "mail", "rcpt", "data", "dot"]

# RFC 3463 §2: class "." subject "." detail; RFC 2034 §4 puts it first in the reply text.
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# qmail's "(#5.1.1)" at the end of the text.
_ENHANCED_QMAIL = re.compile(r"\(#([245])\.(\d{1,3})\.(\d{1,3})\)")
# Bare codes at RCPT that name the mailbox (RFC 5321 §4.2.2): 550 unavailable, 551 not local,
# 553 name not allowed; 556 the domain takes no mail (RFC 7504 §3).
_BARE_MAILBOX = frozenset({550, 551, 553, 556})
# Authentication replies (RFC 4954 §6): 432 transition needed, 454 temporary, 530 required,
# 534 mechanism too weak, 535 credentials invalid, 538 encryption required.
_AUTH_CODES = frozenset({432, 454, 530, 534, 535, 538})
# Texts of bare or undetailed refusals that are about the sender or the relay, not the mailbox
# (Postfix "Sender address rejected", "Relay access denied", qmail "rcpthosts").
_RELAY_TEXT = re.compile(
    r"\bsender\b|\brelay(ing)?\b.{0,20}\b(denied|not permitted|not allowed|refused)|rcpthosts"
    r"|authenticat",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Enhanced:
    """An RFC 3463 enhanced status code: class (2, 4, 5), subject, detail."""

    klass: int
    subject: int
    detail: int

    def __str__(self) -> str:
        return f"{self.klass}.{self.subject}.{self.detail}"


def parse_enhanced(code: int, text: str) -> Enhanced | None:
    """The enhanced code in a reply's text, if it has one whose class matches the basic code
    (RFC 2034 §3: they must agree; a reply where they do not is read by its basic code)."""
    match = _ENHANCED.match(text) or _ENHANCED_QMAIL.search(text)
    if match is None:
        return None
    enhanced = Enhanced(*(int(g) for g in match.groups()))
    return enhanced if enhanced.klass == code // 100 else None


def classify(stage: Stage, code: int, text: str) -> ReplyKind:
    """The kind of a negative reply ``code text`` received at ``stage``.

    - ``421`` (RFC 5321 §3.8: the service is closing the channel) and the AUTH codes of
      RFC 4954 §6 are the relay's or our credentials' problem whatever the enhanced code says.
    - With an enhanced code, its subject decides (RFC 3463 §3.1-§3.8); without one, or with
      ``X.0.x`` ("other or undefined"), the basic code and where it came decide.
    - A mailbox can only be bad at RCPT, DATA or the final dot: at the greeting or MAIL
      every refusal is about the sender or the relay.
    """
    if code == 421 or code in _AUTH_CODES:
        return "sender_or_relay"
    enhanced = parse_enhanced(code, text)
    if enhanced is not None and enhanced.subject != 0:
        return _by_enhanced(stage, enhanced, text)
    if code < 500:
        return "soft"
    return _by_basic(stage, code, text)


def _by_enhanced(stage: Stage, e: Enhanced, text: str) -> ReplyKind:
    permanent = e.klass == 5
    about_recipient = stage in ("rcpt", "data", "dot")
    subject, detail = e.subject, e.detail
    if subject == 7:  # RFC 3463 §3.8 security or policy: reputation, relaying, auth, SPF...
        # ...except RFC 7293 §3: the mailbox (X.7.17) or domain (X.7.18) changed owner.
        if permanent and about_recipient and detail in (17, 18):
            return "bad_mailbox"
        return "sender_or_relay"
    if not permanent:
        return (
            "soft"  # RFC 3463 §2: 4.X.X persistent transient, "sending in the future may succeed"
        )
    if subject == 1:  # §3.2 address status; X.1.7 / X.1.8 are the sender's address
        if detail in (7, 8) or not about_recipient:
            return "sender_or_relay"
        if detail == 0 and _RELAY_TEXT.search(text):  # "5.1.0 Sender address rejected"
            return "sender_or_relay"
        return "bad_mailbox"
    if subject == 2:  # §3.3 mailbox status
        if detail == 1:  # mailbox disabled, not accepting messages
            return "bad_mailbox" if about_recipient else "sender_or_relay"
        if detail == 3:  # message length exceeds administrative limit
            return "bad_message"
        return "soft"  # X.2.2 mailbox full (§3.3: "useful for both permanent and transient")
    if subject == 3 and detail == 4:  # §3.4 message too big for system
        return "bad_message"
    if subject == 6:  # §3.7 message content or media
        return "bad_message"
    # §3.4 mail system, §3.5 network and routing, §3.6 protocol: the relay's side (or ours).
    return "sender_or_relay"


def _by_basic(stage: Stage, code: int, text: str) -> ReplyKind:
    if code == 552:
        # RFC 5321 §4.5.3.1.10: a 552 to RCPT is to be taken as 452 (mailbox full); elsewhere
        # it is the message size (RFC 1870 §6.1).
        return "soft" if stage == "rcpt" else "bad_message"
    if stage == "rcpt" and code in _BARE_MAILBOX and not _RELAY_TEXT.search(text):
        return "bad_mailbox"
    # 554 "transaction failed", 5yz after the dot, at MAIL or at the greeting: nothing says the
    # mailbox is bad, and a misconfigured relay says exactly this to every recipient.
    return "sender_or_relay"
