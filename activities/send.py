"""The send gate and the send that happens once: one activity every journey step goes through.

A send is a small state machine in the send log (docs/decisions/0002-send-idempotency.md):
1. decide: a row under the key is the answer (a retry sends nothing; a claim a dead attempt
   left ``sending`` becomes ``uncertain``); else the gate (activities/gate.py, the pure rule
   core.rules.send_decision), whose "no" is recorded with its code and detail;
2. compose the message;
3. deliver (activities/delivery.py): a connection, MAIL/RCPT/DATA, then right before the
   final dot the gate again and the claim (``sending``, this attempt's token), the dot, and
   one UPDATE to ``sent`` after the 250 — or what the failure's kind makes of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.breaker import Breaker, BreakerPolicy
from activities.context import base_context, extra_context
from activities.delivery import Attempt, Delivery
from activities.gate import gate
from activities.mailer import SmtpPool
from activities.pacing import Pacer
from activities.render import (
    Rendered,
    Renderer,
    TemplateBroken,
    TemplateMissing,
    build_message,
    message_id_for,
)
from activities.send_log import (
    attempt_token,
    heartbeating,
    keep,
    log_for,
    outcome_of,
    row_for,
    settled,
    uncertain,
    unknown_customer,
)
from activities.sms.delivery import TextDelivery, Texts
from core.contracts import SendGaveUp, SendOutcome, SendStepInput
from core.links import Links
from journeys.shop import Shop
from observability import count_send
from store import ab_tests, repo, sends, sent_now
from store.db import SessionFactory, readers
from store.models import Coupon, Customer, SmtpBreaker


@dataclass(frozen=True)
class MailSettings:
    mail_from: str
    public_base_url: str
    secret_key: str
    shop: Shop


# What a send's decision ends in: the answer (recorded before, or the gate's), or the
# customer, the template's context, the request to send and the relay's breaker as read then.
Decided = SendOutcome | tuple[Customer, dict[str, Any], SendStepInput, SmtpBreaker | None]


class SendActivities(Delivery, TextDelivery):
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        mailer: SmtpPool,
        renderer: Renderer,
        mail: MailSettings,
        breaker: BreakerPolicy | None = None,
        pool_wait: float = 60.0,
        texts: Texts | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self._sessions = sessions
        self._readers = readers(sessions)  # transactions that only read (SQLite: DEFERRED)
        self._mailer = mailer
        self._renderer = renderer
        self._mail = mail
        self._links = Links(base_url=mail.public_base_url, secret=mail.secret_key)
        self._breaker = Breaker(
            sessions=sessions, relay=mailer.relay, policy=breaker or BreakerPolicy()
        )
        self._pool_wait = pool_wait  # seconds a send waits for a pool connection
        self._texts = texts  # the SMS provider and composer (None: no text steps)
        self._pacer = pacer  # per mailbox provider, the engaged first (None: not paced)
        self._sent_now = sent_now.for_store(sessions.kw["bind"])

    @activity.defn(name="send_step")
    async def send_step(self, req: SendStepInput) -> SendOutcome:
        outcome = await self._send_step(req)
        count_send(  # the app's metrics (observability.py)
            journey=req.journey,
            step=req.step,
            status=outcome.status,
            already_done=outcome.already_done,
        )
        return outcome

    async def _send_step(self, req: SendStepInput) -> SendOutcome:
        if req.channel == "sms":
            return await self._send_text(req)
        decided = await self._decide(req)
        if isinstance(decided, SendOutcome):
            return decided
        customer, context, req, breaker = decided  # req: with the A/B variant chosen, if any
        message_id = message_id_for(req.idempotency_key, self._mail.mail_from)
        msg = self._compose(req, customer, context, message_id)
        async with heartbeating():
            await self._pace(req, customer.email)
            # The breaker as the decision read it, unless pacing may have waited since.
            admitted = self._breaker.admit() if self._pacer else self._breaker.admit_as(breaker)
            attempt = Attempt(
                req=req,
                email=customer.email,
                token=attempt_token(),
                breaker_dirty=await admitted,  # raises while sending is paused
            )
            return await self._deliver(attempt, msg, message_id, context.get("coupon_code"))

    @activity.defn(name="send_gave_up")
    async def send_gave_up(self, gave_up: SendGaveUp) -> SendOutcome:
        """The workflow stopped retrying a send: ``failed: gave_up`` with why, unless the row
        says more (a claim never finished is ``uncertain``; a decision stays)."""
        req = gave_up.request
        outcome = SendOutcome(status="failed", code="gave_up", detail=gave_up.detail)
        async with self._sessions.begin() as s:
            existing = await repo.get_send(s, key=req.idempotency_key)
            if existing is not None:
                if existing.status == "sending":
                    uncertain(existing, f"attempt {existing.attempt} never finished; gave up")
                return outcome_of(existing, already_done=True)
            customer = await repo.get_customer(s, customer_id=req.customer_id)
            email = customer.email if customer is not None else None
            s.add(row_for(req, customer_id=req.customer_id, email=email, decision=outcome))
        log_for(req.customer_id, "send %s gave up: %s", req.idempotency_key, gave_up.detail)
        return outcome

    async def _decide(self, req: SendStepInput) -> Decided:
        """In one transaction: the answer recorded before, or the gate's (recorded unless
        deferred), or the customer, the template's context and the request to send (with
        its A/B variant: store.ab_tests.choose)."""

        async with self._sessions.begin() as s:
            return await self._decide_in(s, req)

    async def _decide_in(self, s: AsyncSession, req: SendStepInput) -> Decided:
        key = req.idempotency_key
        existing = await repo.get_send(s, key=key)
        if existing is not None and (answer := settled(existing, req)) is not None:
            return answer
        customer = await repo.get_customer(s, customer_id=req.customer_id)
        if customer is None:
            raise unknown_customer(req.customer_id)
        decision = await gate(s, req, customer)
        if decision is not None:
            keep(s, req, customer, existing, decision)
            log_for(customer.id, "send %s %s: %s", key, decision.status, decision.reason)
            return decision
        req = await ab_tests.choose(s, req, claimed=existing)
        cart = await repo.get_cart(s, customer_id=customer.id)
        coupon = await self._coupon(s, req)
        context = base_context(req, customer, cart, coupon, shop=self._mail.shop, links=self._links)
        context.update(await extra_context(s, req, customer))
        # The SMTP relay's breaker, for an email only (a text has its provider).
        email = req.channel == "email"
        breaker = await sends.breaker(s, relay=self._breaker.relay) if email else None
        return customer, context, req, breaker

    async def _coupon(self, s: AsyncSession, req: SendStepInput) -> Coupon | None:
        if req.coupon is None:
            return None
        digest = hashlib.sha256(req.idempotency_key.encode()).hexdigest()[:8].upper()
        return await repo.get_or_create_coupon(
            s,
            source_key=req.idempotency_key,
            code=f"{req.coupon.prefix}-{digest}",
            customer_id=req.customer_id,
            journey=req.journey,
            percent_off=req.coupon.percent_off,
            expires_at=req.now + req.coupon.valid_for,
        )

    def _compose(
        self, req: SendStepInput, customer: Customer, context: dict[str, Any], message_id: str
    ) -> EmailMessage:
        try:
            rendered = self._renderer.render(
                template=req.template, subject=req.subject, context=context
            )
        except (TemplateMissing, TemplateBroken) as exc:
            raise ApplicationError(str(exc), type="TemplateError", non_retryable=True) from exc
        rendered = Rendered(
            subject=rendered.subject,
            text=rendered.text,
            html=self._links.track_html(
                rendered.html,
                customer_id=customer.id,
                send_key=req.idempotency_key,
                keep={context["unsubscribe_url"], context["stay_url"]},
            ),
        )
        return build_message(
            rendered=rendered,
            mail_from=self._mail.mail_from,
            to_email=customer.email,
            to_name=" ".join(p for p in (customer.first_name, customer.last_name) if p) or None,
            message_id=message_id,
            date=req.now,
            unsubscribe_url=context["unsubscribe_url"],
            headers={"X-Journey": f"{req.journey}/{req.step}"},
        )
