"""Replies to our texts: a STOP opts the number out of every text at once, a START opts it
back in (core.sms.reply_keyword has the words). Recorded per customer with that number, as
the events "SMS Opted Out" / "SMS Opted In", in one transaction with their meaning for the
gate (the number's SMS suppression, the customer's SMS consent: when and how); the runs the
customer is in are told (signal ``texts_stopped``) so a text held right now is dropped.
Email is untouched either way (docs/decisions/0015-sms.md)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core.contracts import CustomerLeft
from core.sms import LIFTED_BY_START, STOP
from starter.ingest.events import Event
from starter.ingest.runs import live_runs
from starter.ingest.service import (
    Call,
    EventResult,
    Handled,
    Ingest,
    done,
    handle,
    in_transaction,
)
from store import sms as sms_store

OPTED_OUT = "SMS Opted Out"
OPTED_IN = "SMS Opted In"


class SmsReply(Event):
    """ "SMS Opted Out" / "SMS Opted In": the customer's number replied a keyword."""

    phone: str  # E.164
    keyword: str  # the word as sent (STOP, T, 退订, START, ...)


async def opted_out(call: Call, e: SmsReply) -> Handled:
    """No text to the number from now on (transactional ones too); emails go on."""
    await sms_store.suppress_sms(
        call.s,
        phone=e.phone,
        reason=STOP,
        source="reply",
        customer_id=call.customer.id,
        detail=f"replied {e.keyword!r}",
    )
    if call.customer.phone == e.phone:
        sms_store.set_consent(
            call.customer, granted=False, at=e.occurred_at, source=f"reply: {e.keyword}"
        )
    await call.tell(live_runs(call.customer), "texts_stopped", CustomerLeft(reason="sms_stop"))
    return done(e, "opted_out")


async def opted_in(call: Call, e: SmsReply) -> Handled:
    """START: the STOP is lifted and consent given (a number a provider called dead stays
    suppressed)."""
    await sms_store.lift_sms(call.s, phone=e.phone, reasons=LIFTED_BY_START)
    if call.customer.phone == e.phone:
        sms_store.set_consent(
            call.customer, granted=True, at=e.occurred_at, source=f"reply: {e.keyword}"
        )
    return done(e, "opted_in")


async def replied(
    ingest: Ingest, *, phone: str, keyword: str, opt_out: bool, reply_id: str | None
) -> list[EventResult]:
    """A keyword reply from ``phone``: handled for every customer with that number (a
    number no customer has is suppressed all the same)."""

    async def customers(s: AsyncSession) -> list[str]:
        found = await sms_store.customers_with_phone(s, phone=phone)
        if not found and opt_out:
            await sms_store.suppress_sms(
                s, phone=phone, reason=STOP, source="reply", detail=f"replied {keyword!r}"
            )
        elif not found:
            await sms_store.lift_sms(s, phone=phone, reasons=LIFTED_BY_START)
        return [c.id for c in found]

    name, handler = (OPTED_OUT, opted_out) if opt_out else (OPTED_IN, opted_in)
    results = []
    for customer_id in await in_transaction(ingest.sessions, customers):
        e = SmsReply(
            customer_id=customer_id,
            message_id=f"sms:{reply_id}:{customer_id}"[:200] if reply_id else None,
            phone=phone,
            keyword=keyword,
        )
        results.append(await handle(ingest, name, handler, e))
    return results
