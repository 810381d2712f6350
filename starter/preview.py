"""See a journey step's email for a customer before they do, and send it to yourself:

    python -m starter preview <journey> <step> --customer ID [--out DIR] [--open]
                              [--send-to ADDRESS] [--context KEY=VALUE ...]

writes the email as the send path renders it (activities/preview.py says what differs: links
untracked, unsubscribe inert, no coupon issued) to ``DIR`` (default ``var/preview``):
``<journey>.<step>.<customer>.html``, ``.txt``, ``.headers.txt`` and ``.eml`` (the whole
message as it would go over the wire), and prints their paths and what the send gate says
now. ``--open`` opens the HTML in the browser; ``--send-to`` sends that rendering through
the configured SMTP relay, subject ``[TEST] ...`` and ``X-Journey-Test: true``, outside the
journeys: no gate, no frequency cap, nothing in the send log. Exit 2 for an unknown
journey, step or customer (the valid names listed), a bad ``--context`` or address; 69
(EX_UNAVAILABLE) when the relay does not take the test.

Needs the store, not Temporal. The same preview as a page: GET /preview/{journey}/{step}
(starter/http/preview.py).
"""

from __future__ import annotations

import argparse
import sys
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from activities.mailer import SmtpFailure
from activities.preview import (
    CONTEXT_KEYS,
    Preview,
    PreviewError,
    StepPreviews,
    safe_name,
    send_test,
)
from activities.render import to_wire
from activities.send import MailSettings
from settings import ROOT, Settings
from store.db import SessionFactory, engine_for, make_session_factory

DEFAULT_OUT = ROOT / "var" / "preview"
EX_USAGE, EX_UNAVAILABLE = 2, 69  # as python -m starter's other commands


@dataclass(frozen=True)
class Files:
    html: Path
    text: Path
    headers: Path
    eml: Path


def step_previews(settings: Settings, sessions: SessionFactory) -> StepPreviews:
    """Previews with the settings the worker sends with (worker.py's MailSettings)."""
    return StepPreviews(
        sessions=sessions,
        journeys_dir=settings.journeys_dir,
        mail=MailSettings(
            mail_from=settings.mail_from,
            public_base_url=settings.public_base_url,
            secret_key=settings.secret_key,
            shop=settings.shop,
        ),
    )


def write_files(preview: Preview, out: Path) -> Files:
    """The preview's HTML, text, headers and raw message under ``out`` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ".".join(
        safe_name(p) for p in (preview.journey, preview.step, preview.customer_id)
    )
    files = Files(
        html=stem.with_name(stem.name + ".html"),
        text=stem.with_name(stem.name + ".txt"),
        headers=stem.with_name(stem.name + ".headers.txt"),
        eml=stem.with_name(stem.name + ".eml"),
    )
    files.html.write_text(preview.rendered.html, encoding="utf-8")
    files.text.write_text(preview.rendered.text, encoding="utf-8")
    files.headers.write_text(preview.headers(), encoding="utf-8")
    files.eml.write_bytes(to_wire(preview.message))
    return files


def _context(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or key not in CONTEXT_KEYS:
        known = ", ".join(CONTEXT_KEYS)
        raise argparse.ArgumentTypeError(
            f"--context {text!r}: expected KEY=VALUE, KEY one of {known}"
        )
    return key, value


def add_command(sub: Any) -> None:
    """The ``preview`` subcommand's arguments (on ``python -m starter``'s subparsers)."""
    p = sub.add_parser("preview", help="a journey step's email for a customer; a test send")
    p.add_argument("journey", help="e.g. cart_recovery")
    p.add_argument("step", help="e.g. reminder_1")
    p.add_argument("--customer", required=True, metavar="ID")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR")
    p.add_argument("--open", action="store_true", help="open the HTML in the browser")
    p.add_argument("--send-to", metavar="ADDRESS", help="send it as a test to this address")
    p.add_argument(
        "--context",
        type=_context,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="what the journey would pass: "
        + "; ".join(f"{k}: {v}" for k, v in CONTEXT_KEYS.items()),
    )


async def run_command(args: argparse.Namespace, settings: Settings) -> int:
    engine = engine_for(settings)
    try:
        previews = step_previews(settings, make_session_factory(engine))
        try:
            preview = await previews.preview(
                args.journey, args.step, args.customer, overrides=dict(args.context)
            )
        except PreviewError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EX_USAGE
    finally:
        await engine.dispose()
    files = write_files(preview, args.out)
    print(
        f"{preview.journey}/{preview.step} (template {preview.template}) for {preview.customer_id}"
    )
    print(f"subject: {preview.rendered.subject}")
    if preview.variant is not None:
        print(f"A/B variant: {preview.variant}")
    print(f"step context: {preview.context_said}")
    print(f"the send gate now: {preview.gate_says}")
    for path in (files.html, files.text, files.headers, files.eml):
        print(path)
    if args.open:
        webbrowser.open(files.html.resolve().as_uri())
    if args.send_to:
        return await _send_test(preview, args.send_to, settings)
    return 0


async def _send_test(preview: Preview, to: str, settings: Settings) -> int:
    from worker import make_mailer  # the worker's pool settings; imported only to send

    mailer = make_mailer(settings)
    try:
        reply = await send_test(preview, to=to, mailer=mailer, mail_from=settings.mail_from)
    except PreviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EX_USAGE
    except SmtpFailure as exc:
        print(f"error: the relay {mailer.relay} did not take the test: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    finally:
        await mailer.close()
    print(f"test sent to {to} through {mailer.relay}: {reply}")
    return 0
