"""Suppression keeps every reason (issue 12 item 4): unsubscribed and then hard-bounced, a
re-subscribe lifts the unsubscribe only; the hard bounce still stops every email, the
transactional ones included."""

from __future__ import annotations

from sqlalchemy import select

from core.rules import strongest_suppression
from store import repo
from store.models import SendLog, Suppression, SuppressionReason
from testkit.data import add_customer, email_for
from testkit.waiting import eventually


def test_the_strongest_reason_decides() -> None:
    assert strongest_suppression([]) is None
    assert strongest_suppression(["unsubscribed", "hard_bounce"]) == "hard_bounce"
    assert strongest_suppression(["sunset", "unsubscribed"]) == "unsubscribed"
    assert strongest_suppression(["sunset", "complaint", "hard_bounce"]) == "complaint"


async def test_a_resubscribe_lifts_the_unsubscribe_but_never_the_hard_bounce(make_stack) -> None:
    stack = await make_stack()
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await stack.journeys.unsubscribe({"customer_id": cid, "message_id": f"u-{cid}"})
    await stack.journeys.email_bounced(
        {"customer_id": cid, "type": "hard", "detail": "550 5.1.1 no such user"}
    )
    async with stack.sessions() as s:
        shown = await s.get(Suppression, email_for(cid))
        reasons = [r.reason for r in await repo.suppression_reasons(s, email=email_for(cid))]
    assert shown is not None and shown.reason == "hard_bounce"
    assert reasons == ["hard_bounce", "unsubscribed"]

    await stack.journeys.resubscribe({"customer_id": cid, "message_id": f"s-{cid}"})
    async with stack.sessions() as s:
        shown = await s.get(Suppression, email_for(cid))
        left = list(
            await s.scalars(
                select(SuppressionReason.reason).where(SuppressionReason.email == email_for(cid))
            )
        )
    assert shown is not None and shown.reason == "hard_bounce"
    assert left == ["hard_bounce"]

    # And the gate says so: the welcome series' first email is not sent to that address.
    await stack.journeys.signed_up({"customer_id": cid, "message_id": f"w-{cid}"})

    async def decisions() -> list[tuple[str, str | None]]:
        async with stack.sessions() as s:
            rows = await s.scalars(select(SendLog).where(SendLog.customer_id == cid))
            return [(r.status, r.reason_code) for r in rows]

    assert await eventually(decisions, bool) == [("skipped", "suppressed")]
    assert stack.catcher.to(email_for(cid)) == []


async def test_lifting_the_last_reason_frees_the_address(make_stack) -> None:
    stack = await make_stack()
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await stack.journeys.unsubscribe({"customer_id": cid, "message_id": f"u-{cid}"})
    await stack.journeys.resubscribe({"customer_id": cid, "message_id": f"s-{cid}"})
    async with stack.sessions() as s:
        assert await s.get(Suppression, email_for(cid)) is None
        assert await repo.suppression_reasons(s, email=email_for(cid)) == []
