"""One journey step's email for one customer, rendered as ``send_step`` renders it and sent
nowhere (python -m starter preview, GET /preview/{journey}/{step}); and its test send.

The same parts as the send path (activities/send.py): the step's gate input from
``core.sending.send_step_input``, the template context from ``activities.context``, the
templates and MIME from ``activities.render``. Nothing is written: no send-log row, no
coupon, no claim. Two things differ on purpose, so that looking at a preview or clicking in a
test email never acts on the real customer (docs/decisions/0011-preview-and-test-send.md):

- links are not tracked: no open pixel, every link goes straight to its target;
- every link to this service (unsubscribe, "keep writing to me", ...; and
  ``List-Unsubscribe``) carries a token the API does not accept (signed with a key of this
  process only): it answers "unknown link";
- a step with a coupon shows ``<PREFIX>-PREVIEW``: no coupon is issued.

What a workflow adds to a step's context (the order, the product, the picks, nurture's care
template by category) is read from the customer's data here (``STEP_CONTEXT`` and
``_defaults``); ``overrides`` set it by hand.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.context import base_context, extra_context
from activities.gate import gate
from activities.mailer import SmtpPool
from activities.render import (
    Rendered,
    Renderer,
    TemplateBroken,
    TemplateMissing,
    build_message,
    message_id_for,
)
from activities.send import MailSettings
from activities.template_checks import load_any
from core.contracts import SendOutcome, SendStepInput
from core.ids import workflow_id
from core.links import Links
from core.rules import main_category
from core.sending import send_step_input
from journeys.config import (
    NOT_JOURNEYS,
    JourneyConfig,
    JourneyConfigError,
    NurtureConfig,
    StepConfig,
)
from store import ab_tests, orders, repo
from store.db import SessionFactory
from store.models import Coupon, Customer, Event

TEST_HEADER = "X-Journey-Test"
TEST_SUBJECT_PREFIX = "[TEST] "
# What a step's workflow puts in its context, by (journey, step); "*" for every step of the
# journey (workflows/welcome_series.py, nurture.py, win_back.py; browse's product below).
STEP_CONTEXT: dict[tuple[str, str], dict[str, Any]] = {
    ("welcome_series", "thank_you"): {"order_id": "latest"},
    ("new_customer_nurture", "*"): {"order_id": "latest", "tracking_url": None},
    ("win_back", "win_back_offer"): {"picks": "new_arrivals"},
    ("win_back", "repurchase_offer"): {"picks": "best_sellers"},
}
# What an operator may set by hand (--context KEY=VALUE, or the page's query).
CONTEXT_KEYS = {
    "order_id": "an order id of the customer, or 'latest'",
    "product_sku": "a product's SKU (browse follow-up)",
    "picks": "new_arrivals or best_sellers (win-back)",
    "tracking_url": "a shipment's tracking link (nurture's shipping notice)",
}
PICKS = ("new_arrivals", "best_sellers")
CUSTOMER_ID_MAX = 64  # customers.id
CONTEXT_VALUE_MAX = 2000  # the longest column a context value is looked up in (a URL)


class PreviewError(Exception):
    """No preview; the message names what is wrong and what is valid."""


class PreviewNotFound(PreviewError):
    """An unknown journey, step or customer."""


class PreviewInvalid(PreviewError):
    """A context value or a test address that cannot be used."""


class PreviewBroken(PreviewError):
    """The journey's TOML or a template of the step does not load or render."""


@dataclass(frozen=True)
class Preview:
    """The email as ``send_step`` would send it to the customer now (see the module's doc
    for what differs), and what the send gate says about it now."""

    journey: str
    step: str
    template: str
    variant: str | None  # the customer's arm of the step's A/B test; None: no test
    customer_id: str
    context: dict[str, Any]  # the step's context from the workflow (defaults + overrides)
    rendered: Rendered
    message: EmailMessage  # To: the customer
    gate: SendOutcome | None  # None: the gate would let it out now

    @property
    def gate_says(self) -> str:
        """The gate's answer in words, e.g. ``would send`` or ``skipped: unsubscribed``."""
        if self.gate is None:
            return "would send"
        return f"{self.gate.status}: {self.gate.reason or self.gate.code}"

    @property
    def context_said(self) -> str:
        """What the journey passes the step, e.g. ``order_id=latest, picks=new_arrivals``."""
        return ", ".join(f"{k}={v}" for k, v in self.context.items() if v is not None) or "none"

    def headers(self) -> str:
        """The message's headers as a person reads them, one per line (decoded; the raw
        message, ``to_wire``, holds them as they leave)."""
        return "".join(f"{name}: {value}\n" for name, value in self.message.items())


class StepPreviews:
    """Previews from the journeys in ``journeys_dir`` and the store behind ``sessions``."""

    def __init__(self, *, sessions: SessionFactory, journeys_dir: Path, mail: MailSettings) -> None:
        self._sessions = sessions
        self._dir = journeys_dir
        self._mail = mail
        self._renderer = Renderer(journeys_dir / "templates")  # as worker.py builds it
        # A key nobody else has: the preview's links to this service are inert.
        self._inert = Links(base_url=mail.public_base_url, secret=secrets.token_urlsafe(32))

    def journeys(self) -> list[str]:
        """Every TOML of the journeys directory but those that are no journey."""
        return [p.stem for p in sorted(self._dir.glob("*.toml")) if p.stem not in NOT_JOURNEYS]

    def config(self, journey: str) -> JourneyConfig:
        """The journey's config (its own model: nurture's care templates, ...), named as in
        its TOML (``cart_recovery``) or as in workflow ids (``cart-recovery``)."""
        names = self.journeys()
        name = journey if journey in names else journey.replace("-", "_")
        if name not in names:
            raise PreviewNotFound(f"unknown journey {journey!r}; journeys: {', '.join(names)}")
        try:
            return load_any(name, self._dir)
        except JourneyConfigError as exc:
            raise PreviewBroken(str(exc)) from exc

    # Longer than the ~60-line guide: the send path's steps in its order (gate, A/B arm, context,
    # render, MIME) read in one session that commits nothing; split, the session would be passed
    # through every part
    async def preview(
        self,
        journey: str,
        step: str,
        customer_id: str,
        *,
        overrides: dict[str, str] | None = None,
        now: datetime | None = None,
    ) -> Preview:
        """The email of ``journey``'s ``step`` for ``customer_id``; raises ``PreviewError``."""
        config = self.config(journey)
        journey = config.name
        step_config = _step(config, step)
        at = now or datetime.now(UTC)
        if not _plain(customer_id, CUSTOMER_ID_MAX):  # no id of ours looks like it
            raise PreviewNotFound(f"unknown customer {customer_id!r}")
        async with self._sessions() as s:
            customer = await repo.get_customer(s, customer_id=customer_id)
            if customer is None:
                raise PreviewNotFound(await _unknown_customer(s, customer_id))
            context = await _defaults(s, config, step_config, customer)
            context |= _checked(overrides or {})
            req = send_step_input(
                config,
                step_config,
                workflow_id=workflow_id(journey, customer.id),
                run_chain_id="preview",
                customer_id=customer.id,
                entered_at=at,
                now=at,
                template=await _template(s, config, step_config, customer, context),
                context=context,
            )
            verdict = await gate(s, req, customer)
            # The customer's arm of the step's A/B test, as the send path picks it (a winner
            # it would record now is rolled back with this session: nothing is committed).
            req = await ab_tests.choose(s, req, claimed=None)
            cart = await repo.get_cart(s, customer_id=customer.id)
            values = base_context(
                req, customer, cart, _coupon(req), shop=self._mail.shop, links=self._inert
            )
            values.update(await extra_context(s, req, customer))
        try:
            rendered = self._renderer.render(
                template=req.template, subject=req.subject, context=values
            )
        except (TemplateMissing, TemplateBroken) as exc:
            raise PreviewBroken(f"{self._dir / 'templates'}: {exc}") from exc
        message = build_message(
            rendered=rendered,
            mail_from=self._mail.mail_from,
            to_email=customer.email,
            to_name=" ".join(p for p in (customer.first_name, customer.last_name) if p) or None,
            message_id=message_id_for(f"preview:{uuid.uuid4()}", self._mail.mail_from),
            date=at,
            unsubscribe_url=values["unsubscribe_url"],
            headers={"X-Journey": f"{journey}/{step}"},
        )
        return Preview(
            journey=journey,
            step=step,
            template=req.template,
            variant=req.variant,
            customer_id=customer.id,
            context=req.context,
            rendered=rendered,
            message=message,
            gate=verdict,
        )


def test_message(preview: Preview, *, to: str, mail_from: str) -> EmailMessage:
    """The preview's rendering addressed to ``to``, marked as a test: the subject starts with
    ``[TEST]`` and ``X-Journey-Test: true``; a Message-ID of its own."""
    try:
        address = validate_email(to, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise PreviewInvalid(f"send-to {to!r}: {exc}") from exc
    rendered = preview.rendered
    return build_message(
        rendered=Rendered(
            subject=TEST_SUBJECT_PREFIX + rendered.subject, text=rendered.text, html=rendered.html
        ),
        mail_from=mail_from,
        to_email=address,
        to_name=None,
        message_id=message_id_for(f"test:{uuid.uuid4()}", mail_from),
        date=datetime.now(UTC),
        unsubscribe_url=preview.message["List-Unsubscribe"].strip("<>"),
        headers={"X-Journey": f"{preview.journey}/{preview.step}", TEST_HEADER: "true"},
    )


async def send_test(preview: Preview, *, to: str, mailer: SmtpPool, mail_from: str) -> str:
    """Send the preview to ``to`` through ``mailer``, outside the journeys: no gate, no cap,
    no send log, no circuit breaker. Returns the relay's reply; raises ``PreviewError`` for
    a bad address and ``activities.mailer.SmtpFailure`` when the relay refuses it."""
    message = test_message(preview, to=to, mail_from=mail_from)
    reply = await mailer.send(message)
    return f"{reply.code} {reply.text}".strip()


def _step(config: JourneyConfig, name: str) -> StepConfig:
    emails = ", ".join(s.name for s in config.steps if s.channel == "email")
    try:
        step = config.step(name)
    except KeyError:
        raise PreviewNotFound(
            f"journey {config.name!r} has no step {name!r}; its steps: {emails}"
        ) from None
    if step.channel != "email":
        raise PreviewInvalid(
            f"step {name!r} of journey {config.name!r} is a text message (channel "
            f"{step.channel}); the preview shows emails: {emails}"
        )
    return step


async def _unknown_customer(s: AsyncSession, customer_id: str) -> str:
    like = (
        await s.scalars(select(Customer.id).where(Customer.id.contains(customer_id[:32])).limit(10))
    ).all()
    hint = f"; customers with ids like it: {', '.join(like)}" if like else ""
    return f"unknown customer {customer_id!r}{hint}"


def _plain(text: str, longest: int) -> bool:
    """Text the store can be asked about: not empty, not too long, no control characters."""
    return 0 < len(text) <= longest and not any(ord(c) < 32 or ord(c) == 127 for c in text)


def _checked(overrides: dict[str, str]) -> dict[str, Any]:
    for key, value in overrides.items():
        if key not in CONTEXT_KEYS:
            known = "; ".join(f"{k} ({why})" for k, why in CONTEXT_KEYS.items())
            raise PreviewInvalid(f"context {key!r} is not known; known: {known}")
        if not _plain(value, CONTEXT_VALUE_MAX):
            raise PreviewInvalid(
                f"context {key}={value!r}: expected 1 to {CONTEXT_VALUE_MAX} characters, "
                "no control characters"
            )
        if key == "picks" and value not in PICKS:
            raise PreviewInvalid(f"context picks={value!r}: expected {' or '.join(PICKS)}")
    return dict(overrides)


async def _defaults(
    s: AsyncSession, config: JourneyConfig, step: StepConfig, customer: Customer
) -> dict[str, Any]:
    context = dict(STEP_CONTEXT.get((config.name, "*"), {}))
    context |= STEP_CONTEXT.get((config.name, step.name), {})
    if config.name == "browse_follow_up":  # the product the run follows: the last one viewed
        viewed = await s.scalar(
            select(Event.properties)
            .where(Event.customer_id == customer.id, Event.name == "Product Viewed")
            .order_by(Event.occurred_at.desc(), Event.id.desc())
            .limit(1)
        )
        if viewed and viewed.get("sku"):
            context["product_sku"] = str(viewed["sku"])
    return context


async def _template(
    s: AsyncSession,
    config: JourneyConfig,
    step: StepConfig,
    customer: Customer,
    context: dict[str, Any],
) -> str:
    """The step's template; nurture's care step picks one by the order's main category."""
    if not (isinstance(config, NurtureConfig) and step.name == "care"):
        return step.template
    order_id = context.get("order_id") or "latest"
    order = await orders.get_order(s, customer_id=customer.id, order_id=str(order_id))
    lines = order.lines.get("items", []) if order is not None else []
    return config.care_template(main_category(line.get("category") for line in lines))


def _coupon(req: SendStepInput) -> Coupon | None:
    """What the step's coupon looks like, not issued: ``<PREFIX>-PREVIEW``."""
    if req.coupon is None:
        return None
    return Coupon(
        code=f"{req.coupon.prefix}-PREVIEW",
        percent_off=req.coupon.percent_off,
        expires_at=req.now + req.coupon.valid_for,
    )


def safe_name(text: str) -> str:
    """``text`` as part of a file name (ids may hold ``@``, ``/``, spaces)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "_"
