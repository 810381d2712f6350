"""Sending one text, part of :class:`activities.send.SendActivities`: the same send log
and states as an email (docs/decisions/0002-send-idempotency.md, 0015-sms.md).

Decide (the row under the key, else the gate, the one for both channels), compose (template,
short links, opt-out hint, segments), then one short transaction: the gate again with the
customer's row locked and the claim (``sending``, this attempt's token); the provider's
request; one write of what it answered: ``sent`` with the provider's id, ``failed`` (refused
for good; a number the provider calls dead is suppressed for texts), ``uncertain`` (the
request went out and no answer came: not sent again unless ``on_uncertain = "resend"``), or,
when the provider took nothing, the claim released and the activity retried (deferred).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.gate import claim
from activities.render import TemplateBroken, TemplateMissing
from activities.send_log import (
    attempt_token,
    count_uncertain,
    heartbeating,
    log_for,
    persist,
)
from activities.sms.compose import SmsComposer
from activities.sms.provider import SmsFailure, SmsProvider
from core.contracts import ReasonCode, SendOutcome, SendStatus, SendStepInput, describe
from core.sms import PERMANENT_ERRORS
from store import sends
from store import sms as sms_store
from store.db import SessionFactory
from store.models import Customer

TEXT_ENDINGS: dict[str, tuple[SendStatus, ReasonCode]] = {
    "rejected": ("failed", "rejected"),
    "uncertain": ("uncertain", "uncertain"),
}


@dataclass(frozen=True)
class Texts:
    """What sending texts needs: the provider, the composer, and the status callback URL
    the provider reports deliveries to (``<PUBLIC_BASE_URL>/v1/sms/status``)."""

    provider: SmsProvider
    composer: SmsComposer
    status_callback: str | None


class TextDelivery:
    """Part of :class:`activities.send.SendActivities`, which sets these attributes."""

    _sessions: SessionFactory
    _texts: Texts | None

    async def _decide(self, req: SendStepInput) -> Any: ...  # SendActivities'

    async def _send_text(self, req: SendStepInput) -> SendOutcome:
        texts = self._texts
        if texts is None:
            raise ApplicationError(
                "a text step, and no SMS provider is configured (SMS_PROVIDER)",
                type="SmsNotConfigured",
                non_retryable=True,
            )
        decided = await self._decide(req)
        if isinstance(decided, SendOutcome):
            return decided
        customer, context, *rest = decided
        req = rest[0] if rest else req
        assert isinstance(customer, Customer) and customer.phone is not None  # the gate's
        phone = customer.phone
        body = await self._compose_text(texts, req, customer, context)
        async with heartbeating():
            token = attempt_token()
            refusal = await self._claim_text(req, phone, token)
            if refusal is not None:
                return refusal
            try:
                accepted = await texts.provider.send(
                    to=phone, body=body, status_callback=texts.status_callback
                )
            except SmsFailure as exc:
                return await self._text_failed(req, phone, token, exc)
            except asyncio.CancelledError:
                why = "cancelled while the provider's answer was awaited"
                await asyncio.shield(
                    persist(lambda: self._end_text(req, token, "uncertain", None, why))
                )
                count_uncertain(req.idempotency_key, why)
                raise
            await persist(lambda: self._end_text(req, token, "sent", accepted.sid, None))
        log_for(req.customer_id, "sent text %s (%s)", req.idempotency_key, accepted.sid)
        return SendOutcome(status="sent", message_id=accepted.sid)

    async def _compose_text(
        self, texts: Texts, req: SendStepInput, customer: Customer, context: dict[str, Any]
    ) -> str:
        async def shorten(url: str) -> str:
            async with self._sessions.begin() as s:
                return await sms_store.short_link(
                    s, customer_id=customer.id, send_key=req.idempotency_key, url=url
                )

        try:
            return await texts.composer.compose(
                req.template,
                context,
                language=str(customer.attributes.get("language") or "") or None,
                transactional=req.transactional,
                shorten=shorten,
            )
        except (TemplateMissing, TemplateBroken) as exc:
            raise ApplicationError(str(exc), type="TemplateError", non_retryable=True) from exc

    async def _claim_text(self, req: SendStepInput, phone: str, token: str) -> SendOutcome | None:
        """The gate again with the customer's row locked, then the claim; a "no" is
        recorded (unless a hold) and returned."""
        async with self._sessions.begin() as s:
            claimed = await claim(
                s,
                req,
                recipient=phone,
                current=lambda customer: customer.phone,
                changed="number changed since the text was composed",
                token=token,
            )
            if isinstance(claimed, SendOutcome):
                return claimed
            claimed.channel = "sms"
        return None

    async def _end_text(
        self, req: SendStepInput, token: str, status: str, sid: str | None, detail: str | None
    ) -> None:
        endings: dict[str, ReasonCode] = {"failed": "rejected", "uncertain": "uncertain"}
        code = endings.get(status)
        async with self._sessions.begin() as s:
            done = await sends.finish(
                s,
                key=req.idempotency_key,
                attempt=token,
                status=status,
                code=code,
                detail=detail,
                reason=describe(code, detail),
            )
            if done is None:
                log_for(req.customer_id, "text %s: claim taken over", req.idempotency_key)
            if sid is not None:
                await sms_store.set_message_id(s, key=req.idempotency_key, message_id=sid)

    async def _text_failed(
        self, req: SendStepInput, phone: str, token: str, exc: SmsFailure
    ) -> SendOutcome:
        key = req.idempotency_key
        if exc.kind == "unsent":  # the provider took nothing: release, retry later
            async with self._sessions.begin() as s:
                await sends.release(s, key=key, attempt=token)
            log_for(req.customer_id, "text %s deferred (%s): sent again later", key, exc.detail)
            raise ApplicationError(
                f"SMS provider: {exc.detail}: deferred, sent again later",
                type="SmsDeferred",
                category=ApplicationErrorCategory.BENIGN,
            ) from exc
        status, code = TEXT_ENDINGS[exc.kind]
        await persist(lambda: self._end_text(req, token, status, None, exc.detail))
        if exc.kind == "uncertain":
            count_uncertain(key, exc.detail)
        elif exc.code is not None and exc.code in PERMANENT_ERRORS:
            async with self._sessions.begin() as s:
                await sms_store.suppress_sms(
                    s,
                    phone=phone,
                    reason=PERMANENT_ERRORS[exc.code],
                    source="send",
                    customer_id=req.customer_id,
                    detail=exc.detail,
                )
        log_for(req.customer_id, "text %s %s: %s", key, status, exc.detail)
        return SendOutcome(status=status, code=code, detail=exc.detail)
