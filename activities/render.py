"""Message rendering (Jinja2 templates from journeys/templates) and MIME building."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any

import jinja2


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
    def __init__(self, templates_dir: Path) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir)),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2")),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._subjects = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)

    def render(self, *, template: str, subject: str, context: dict[str, Any]) -> Rendered:
        try:
            html = self._env.get_template(f"{template}.html.j2").render(context)
            text = self._env.get_template(f"{template}.txt.j2").render(context)
            subj = self._subjects.from_string(subject).render(context)
        except jinja2.TemplateNotFound as exc:
            raise TemplateMissing(f"template {exc.name} not found") from exc
        except jinja2.UndefinedError as exc:
            raise TemplateBroken(f"template {template}: {exc.message}") from exc
        return Rendered(subject=" ".join(subj.split()), text=text, html=html)


def message_id_for(key: str, mail_from: str) -> str:
    """Deterministic Message-ID: the same send always carries the same id."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


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
    """multipart/alternative (text, then HTML) with RFC 8058 one-click unsubscribe headers."""
    msg = EmailMessage()
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
    return msg
