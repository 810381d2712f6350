"""Message rendering (Jinja2 templates from journeys/templates), MIME building, and the
exact bytes a message goes over the wire as."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any

import jinja2

# RFC 5322 §2.1.1: a line MUST be at most 998 characters and SHOULD be at most 78.
MAX_LINE = 998
SOFT_LINE = 78
# Header fields whose value is a URL in angle brackets, a msg-id or a fixed token: RFC 2047 §5
# allows encoded-words in none of them (RFC 2369 §2, RFC 8058 §3, RFC 5322 §3.6.4), and a
# provider that finds one shows no unsubscribe button. They must be plain ASCII.
NEVER_ENCODED = frozenset(
    {
        "list-unsubscribe",
        "list-unsubscribe-post",
        "list-help",
        "list-subscribe",
        "list-post",
        "list-owner",
        "list-archive",
        "message-id",
        "in-reply-to",
        "references",
    }
)


class TemplateMissing(Exception):
    """A template named by a journey step does not exist."""


class TemplateBroken(Exception):
    """A template exists but cannot be rendered with the data given (names the variable)."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Renderer:
    """``old_subjects``: give subjects with a bare ``{{ first_name }}`` (configs of runs that
    started before subjects read well without a name) "there" for a missing name; the
    template checks turn it off, so a new config with such a subject fails ``make test``."""

    def __init__(self, templates_dir: Path, *, old_subjects: bool = True) -> None:
        self._old_subjects = old_subjects
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir)),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2")),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._subjects = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
        self._compiled: dict[str, jinja2.Template] = {}

    def _subject(self, subject: str, context: dict[str, Any]) -> str:
        """The subject line, compiled once per text. Subjects written before templates read
        well without a name put ``{{ first_name }}`` in bare; runs started with such a config
        keep the greeting they began with ("there") instead of a dangling comma."""
        compiled = self._compiled.get(subject)
        if compiled is None:
            compiled = self._compiled[subject] = self._subjects.from_string(subject)
        if self._old_subjects and "first_name" in subject and "if first_name" not in subject:
            context = {**context, "first_name": context.get("first_name") or "there"}
        return compiled.render(context)

    def render(self, *, template: str, subject: str, context: dict[str, Any]) -> Rendered:
        try:
            html = self._env.get_template(f"{template}.html.j2").render(context)
            text = self._env.get_template(f"{template}.txt.j2").render(context)
            subj = self._subject(subject, context)
        except jinja2.TemplateNotFound as exc:
            raise TemplateMissing(f"template {exc.name} not found") from exc
        except jinja2.UndefinedError as exc:
            raise TemplateBroken(f"template {template}: {exc.message}") from exc
        return Rendered(subject=" ".join(subj.split()), text=text, html=html)


def message_id_for(key: str, mail_from: str) -> str:
    """Deterministic Message-ID: the same send always carries the same id."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


class WirePolicy(EmailPolicy):
    """``email.policy.SMTP`` that never folds an ASCII header by encoding it.

    The stock folder turns any word longer than a line into RFC 2047 encoded-words; a
    ``List-Unsubscribe: <https://...>`` longer than 78 characters then leaves as
    ``=?utf-8?q?=3Chttps...?=``, which RFC 2369 does not allow. Here an ASCII value is
    written as it is and folded only at the spaces it already has (RFC 5322 §2.2.3, so
    unfolding gives back the exact value); a word longer than a line stays whole on its
    line (up to 998). Only a non-ASCII value (a Subject or display name) is left to the
    stock folder, whose encoded-words are correct there.
    """

    def fold(self, name: str, value: str) -> str:
        plain = _plain_value(name, value)
        if plain is None:
            folded: str = super().fold(name, value)
            return folded
        return _fold_at_spaces(name, plain, self.linesep)

    def fold_binary(self, name: str, value: str) -> bytes:
        plain = _plain_value(name, value)
        if plain is None:
            return super().fold_binary(name, value)
        return _fold_at_spaces(name, plain, self.linesep).encode("ascii")


# CRLF line ends (RFC 5321 §2.3.8) and every body part 7-bit clean (quoted-printable where a
# line is long or not ASCII), so the message needs no 8BITMIME from the relay.
WIRE_POLICY = WirePolicy(linesep="\r\n", cte_type="7bit", max_line_length=SOFT_LINE)


def to_wire(message: EmailMessage) -> bytes:
    """The bytes a message is sent as (before SMTP dot-stuffing): CRLF lines, headers per
    ``WirePolicy``. Any ``EmailMessage`` goes through it, also one parsed from elsewhere."""
    return message.as_bytes(policy=WIRE_POLICY)


def _plain_value(name: str, value: str) -> str | None:
    """The value to write verbatim, or None to leave the header to the stock folder."""
    if hasattr(value, "name"):  # a header object: str() is its value, decoded
        text = str(value)
        source = False
    else:  # a header kept as it came from a parsed source: unfold it (RFC 5322 §2.2.3)
        text = "".join(value.splitlines())
        source = True
    if not text.isascii():
        if name.lower() in NEVER_ENCODED:
            raise ValueError(f"{name} must be ASCII (percent-encode the URL): {text!r}")
        return None
    if not source and "=?" in text and name.lower() not in NEVER_ENCODED:
        return None  # text that reads like an encoded-word: let the stock folder quote it
    return text


def _fold_at_spaces(name: str, value: str, linesep: str) -> str:
    """``Name: value`` folded at existing single spaces only, lines ≤ 78 where the words
    allow it; a single word longer than that keeps its own line (≤ 998)."""
    words = value.split(" ")
    lines = [f"{name}: {words[0]}"]
    for word in words[1:]:
        # Fold before a word, never before an empty one: a line of only spaces is not allowed.
        if word and len(lines[-1]) + 1 + len(word) > SOFT_LINE and lines[-1].strip():
            lines.append(f" {word}")
        else:
            lines[-1] += f" {word}"
    too_long = [line for line in lines if len(line) > MAX_LINE]
    if too_long:
        raise ValueError(f"{name}: a line of {len(too_long[0])} characters exceeds {MAX_LINE}")
    return linesep.join(lines) + linesep


def build_message(
    *,
    rendered: Rendered,
    mail_from: str,
    to_email: str,
    to_name: str | None,
    message_id: str,
    date: datetime,
    unsubscribe_url: str,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """multipart/alternative (text, then HTML) with RFC 8058 one-click unsubscribe headers.

    Send it with ``to_wire`` (SmtpPool does): the unsubscribe URL leaves as written.
    """
    if not unsubscribe_url.isascii() or any(c in unsubscribe_url for c in " <>\r\n"):
        raise ValueError(f"unsubscribe URL must be an ASCII URI: {unsubscribe_url!r}")
    msg = EmailMessage(policy=WIRE_POLICY)
    msg["From"] = mail_from
    msg["To"] = Address(display_name=to_name or "", addr_spec=to_email)
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    for part in msg.iter_parts():
        # add_alternative makes the HTML part an EmailMessage, which adds its own MIME-Version;
        # RFC 2045 §4 puts it at the top level only.
        del part["MIME-Version"]
    return msg
