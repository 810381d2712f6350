"""The send gate and the idempotent send: one activity every journey step goes through.

Order of work for one step (the key is workflow id + run chain + step name):
1. a decision already recorded under the key is returned as it is (retries send nothing);
2. the gate: an unknown customer is an error; the store's facts about the customer go to
   core.rules.send_decision (suppression, unsubscribe, the journey's preconditions, the
   cap, the holdout; a paused journey and quiet hours defer); a "no" is recorded with its
   code and detail;
3. render, claim the key (row in state ``sending``), SMTP, mark ``sent`` at once.
The only window for a second email is a crash between the SMTP server's accept and step 3's
final commit (docs/decisions/0002-send-idempotency.md).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import base_context, extra_context
from activities.journey import ordered_since
from activities.mailer import (
    PermanentSmtpError,
    RecipientRejected,
    SmtpPool,
    TemporarySmtpError,
)
from activities.render import (
    Rendered,
    Renderer,
    TemplateBroken,
    TemplateMissing,
    build_message,
    message_id_for,
)
from core.contracts import ReasonCode, SendOutcome, SendStepInput, describe
from core.links import Links
from core.rules import Recipient, cart_state, send_decision
from journeys.shop import Shop
from store import repo
from store.db import SessionFactory
from store.models import Cart, Coupon, Customer, SendLog, utcnow

# What an SMTP answer that ends a send is called (the detail is the server's reply).
SMTP_CODES: dict[str, ReasonCode] = {"bounced": "hard_bounce", "failed": "rejected"}
# A claim younger than this belongs to an attempt that may still be running.
CLAIM_LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class MailSettings:
    mail_from: str
    public_base_url: str
    secret_key: str
    shop: Shop


class SendActivities:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        mailer: SmtpPool,
        renderer: Renderer,
        mail: MailSettings,
    ) -> None:
        self._sessions = sessions
        self._mailer = mailer
        self._renderer = renderer
        self._mail = mail
        self._links = Links(base_url=mail.public_base_url, secret=mail.secret_key)

    @activity.defn(name="send_step")
    async def send_step(self, req: SendStepInput) -> SendOutcome:
        decided = await self._decide(req)
        if isinstance(decided, SendOutcome):
            return decided
        customer, context = decided
        message_id = message_id_for(req.idempotency_key, self._mail.mail_from)
        msg = self._compose(req, customer, context, message_id)
        await self._claim(req, customer, message_id, context.get("coupon_code"))
        return await self._deliver(req.idempotency_key, customer, msg, message_id)

    async def _decide(self, req: SendStepInput) -> SendOutcome | tuple[Customer, dict[str, Any]]:
        """Steps 1 and 2 in one transaction: the decision recorded before, or the gate's
        (recorded unless deferred), or the customer and the template's context to send."""
        key = req.idempotency_key
        async with self._sessions.begin() as s:
            existing = await repo.get_send(s, key=key)
            if existing is not None and existing.status != "sending":
                return _outcome(existing, already_done=True)
            if existing is not None and _claim_is_live(existing):
                raise ApplicationError(f"send {key} is in progress in another attempt")
            customer = await repo.get_customer(s, customer_id=req.customer_id)
            if customer is None:
                raise ApplicationError(
                    f"unknown customer {req.customer_id!r}: record it (identify) before "
                    "starting a journey for it",
                    type="UnknownCustomer",
                    non_retryable=True,
                )
            cart = await repo.get_cart(s, customer_id=customer.id)
            decision = send_decision(req, await self._recipient(s, req, customer, cart))
            if decision is not None:
                if decision.status != "deferred":  # a hold is decided again next time
                    if existing is None:
                        s.add(_row(req, customer, decision))
                    else:
                        _decided(existing, decision)
                _log(customer.id, "send %s %s: %s", key, decision.status, decision.reason)
                return decision
            coupon = await self._coupon(s, req)
            context = base_context(
                req, customer, cart, coupon, shop=self._mail.shop, links=self._links
            )
            context.update(await extra_context(s, req, customer))
        return customer, context

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

    async def _deliver(
        self, key: str, customer: Customer, msg: EmailMessage, message_id: str
    ) -> SendOutcome:
        """Step 3 after the claim: SMTP, then what the server answered, recorded at once."""
        try:
            await self._mailer.send(msg)
        except RecipientRejected as exc:
            await self._finish(key, status="bounced", reason=str(exc))
            return SendOutcome(status="bounced", code="hard_bounce", detail=str(exc))
        except PermanentSmtpError as exc:
            await self._finish(key, status="failed", reason=str(exc))
            return SendOutcome(status="failed", code="rejected", detail=str(exc))
        except TemporarySmtpError as exc:
            await self._release(key)
            raise ApplicationError(f"SMTP temporarily failed: {exc}", type="SmtpTemporary") from exc
        except BaseException:
            await self._release(key)
            raise
        accepted = time.perf_counter()
        await self._finish(key, status="sent", reason=None)
        _log(
            customer.id,
            "sent %s to customer %s (accept-to-commit window %.1f ms)",
            key,
            customer.id,
            (time.perf_counter() - accepted) * 1000,
        )
        return SendOutcome(status="sent", message_id=message_id)

    async def _recipient(
        self, s: AsyncSession, req: SendStepInput, customer: Customer, cart: Cart | None
    ) -> Recipient:
        """The facts the gate decides on (core.rules.send_decision), read from the store."""
        try:
            validate_email(customer.email, check_deliverability=False)
            email_problem = None
        except EmailNotValidError as exc:
            email_problem = str(exc)
        suppression = await repo.get_suppression(s, email=customer.email)
        pause = await repo.journey_pause(s, journey=req.journey)
        ordered = req.check_orders and await ordered_since(
            s,
            customer_id=customer.id,
            since=req.entered_at,
            ignore_order_id=req.ignore_order_id,
            skus=req.order_skus,
        )
        recent = 0
        if not req.transactional:  # the cap does not hold transactional mail
            recent = await repo.count_sent_since(
                s,
                customer_id=customer.id,
                since=req.now - req.frequency_cap.window,
                other_than_run_chain=req.run_chain_id,
            )
        return Recipient(
            email_problem=email_problem,
            subscribed=customer.subscribed,
            unsubscribed_journeys=customer.attributes.get("unsubscribed_journeys", []),
            suppression=suppression.reason if suppression is not None else None,
            timezone=customer.timezone,
            cart=cart_state(cart.status, cart.lines) if cart is not None else "gone",
            ordered=ordered,
            recent_sends=recent,
            paused=(pause.reason or "") if pause is not None else None,
        )

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

    async def _claim(
        self, req: SendStepInput, customer: Customer, message_id: str, coupon_code: str | None
    ) -> None:
        row = _row(req, customer, None)
        row.message_id, row.coupon_code, row.claimed_at = message_id, coupon_code, utcnow()
        try:
            async with self._sessions.begin() as s:
                existing = await repo.get_send(s, key=req.idempotency_key)
                if existing is None:
                    s.add(row)
                elif existing.status == "sending":  # a stale claim of a dead attempt
                    existing.claimed_at = utcnow()
                else:
                    raise ApplicationError(f"send {req.idempotency_key} decided meanwhile")
        except IntegrityError as exc:
            raise ApplicationError(f"send {req.idempotency_key} claimed concurrently") from exc

    async def _finish(self, key: str, *, status: str, reason: str | None) -> None:
        """Record what the SMTP server answered: ``sent``, or ``bounced`` / ``failed`` with
        its reply as ``reason`` (the code follows from the status: SMTP_CODES)."""
        async with self._sessions.begin() as s:
            row = await repo.get_send(s, key=key)
            if row is None:
                raise ApplicationError(f"claim for {key} vanished", non_retryable=True)
            row.status = status
            code = SMTP_CODES.get(status)
            row.reason_code, row.reason_detail = code, reason
            row.reason = describe(code, reason)
            if status == "sent":
                row.sent_at = utcnow()
                customer = await s.get(Customer, row.customer_id)
                if customer is not None and (
                    customer.last_emailed_at is None or row.decided_at > customer.last_emailed_at
                ):
                    customer.last_emailed_at = row.decided_at  # the win-back sweep reads it
            elif status == "bounced" and row.recipient:
                # The bounce and the suppression it causes are one write, never half of it.
                await repo.suppress(
                    s,
                    email=row.recipient,
                    customer_id=row.customer_id,
                    reason="hard_bounce",
                    detail=reason,
                )

    async def _release(self, key: str) -> None:
        """The SMTP server did not take the message: drop the claim so a retry can send."""
        async with self._sessions.begin() as s:
            await repo.delete_send(s, key=key)


def _log(customer_id: str, message: str, *args: Any) -> None:
    """Through the activity logger: every line carries the workflow and the customer."""
    activity.logger.info(message, *args, extra={"customer_id": customer_id})


def _claim_is_live(row: SendLog) -> bool:
    return row.claimed_at is not None and datetime.now(UTC) - row.claimed_at < CLAIM_LEASE


def _row(req: SendStepInput, customer: Customer, decision: SendOutcome | None) -> SendLog:
    """A send log row: claimed (``decision`` None, state ``sending``) or decided."""
    row = SendLog(
        idempotency_key=req.idempotency_key,
        customer_id=customer.id,
        journey=req.journey,
        workflow_id=req.workflow_id,
        run_chain_id=req.run_chain_id,
        step=req.step,
        template=req.template,
        status="sending",
        recipient=customer.email,
        decided_at=req.now,
    )
    if decision is not None:
        _decided(row, decision)
    return row


def _decided(row: SendLog, decision: SendOutcome) -> None:
    row.status = decision.status
    row.reason_code, row.reason_detail = decision.code, decision.detail
    row.reason = decision.reason  # what people read (explain); never read back by code


def _outcome(row: SendLog, *, already_done: bool) -> SendOutcome:
    return SendOutcome(
        status=row.status,
        code=row.reason_code,
        detail=row.reason_detail,
        message_id=row.message_id,
        already_done=already_done,
    )
