"""Cadence: the frequency cap of the customer's lifecycle stage (journeys/lifecycle.toml
[cadence]), and a capped email held until the cap allows it (a step's ``on_cap = "defer"``)
instead of dropped, in virtual time against the real stack."""

from __future__ import annotations

import asyncio
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.contracts import JourneyState
from settings import ROOT
from testkit.data import TEE, abandon_cart, add_customer, email_for, emails_from_another_journey
from testkit.mail import journey_mails, steps_of, wait_for_mail
from testkit.waiting import PATIENCE, eventually, settle

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def cart_steps(**first_step: Any) -> list[dict[str, Any]]:
    """cart_recovery.toml's steps, the first one changed."""
    steps: list[dict[str, Any]] = tomllib.loads(
        (ROOT / "journeys" / "cart_recovery.toml").read_text()
    )["steps"]
    steps[0].update(first_step)
    return steps


async def test_the_cap_depends_on_the_stage(stack):
    """The same history (a nurture thanks today): a sleeping customer's cart reminder is
    capped by the sleeping stage's cap (1 email in 30 days); an active one's goes out (the
    journey's own cap: 2 a day)."""
    sleeping, active = stack.new_customer_id(), stack.new_customer_id()
    now = datetime.now(UTC)
    handles = {}
    for cid, days in ((sleeping, 150), (active, 20)):
        await add_customer(stack, cid)
        await stack.journeys.order_placed(
            {
                "customer_id": cid,
                "order_id": f"{cid}-1",
                "total": "30",
                "occurred_at": now - timedelta(days=days),
            }
        )
        await wait_for_mail(stack.catcher, email_for(cid), 1)  # the nurture's thanks
        handles[cid] = await abandon_cart(stack, cid, TEE)
    for handle in handles.values():
        await stack.fast_forward(handle, timedelta(hours=1, minutes=1))

    async def first_decision(cid: str) -> list[str]:
        state: JourneyState = await handles[cid].query("state", result_type=JourneyState)
        return [f"{d.status}:{d.code}" for d in state.decisions]

    assert (await eventually(lambda: first_decision(sleeping), bool)) == ["skipped:capped"]
    assert (await eventually(lambda: first_decision(active), bool)) == ["sent:None"]
    state = await handles[sleeping].query("state", result_type=JourneyState)
    assert "within 30 days" in (state.decisions[0].reason or "")


async def test_a_deferred_send_goes_out_when_the_cap_allows_and_not_before(make_stack):
    stack = await make_stack(cart_recovery={"steps": cart_steps(on_cap="defer")})
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await emails_from_another_journey(stack, cid, journey="welcome_series", count=2)
    handle = await abandon_cart(stack, cid, TEE)

    await stack.fast_forward(handle, timedelta(hours=1, minutes=1))
    state = await eventually(
        lambda: handle.query("state", result_type=JourneyState), lambda s: bool(s.decisions)
    )
    held = state.decisions[0]
    assert (held.step, held.status, held.code) == ("reminder_1", "deferred", "capped")
    assert "held until" in (held.reason or "")

    await stack.fast_forward(handle, timedelta(hours=22))  # 23 h after the cart: still held
    await settle()
    assert journey_mails(stack.catcher, cid, "cart_recovery") == []

    await stack.fast_forward(handle, timedelta(hours=2))  # the welcome emails left the day
    mails = await wait_for_mail(stack.catcher, email_for(cid), 1)
    assert steps_of(mails) == ["reminder_1"]
    state = await handle.query("state", result_type=JourneyState)
    assert [d.status for d in state.decisions if d.step == "reminder_1"] == ["deferred", "sent"]


async def test_a_deferred_send_is_dropped_when_they_buy_meanwhile(make_stack):
    stack = await make_stack(cart_recovery={"steps": cart_steps(on_cap="defer")})
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await emails_from_another_journey(stack, cid, journey="welcome_series", count=2)
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=1))
    await eventually(
        lambda: handle.query("state", result_type=JourneyState), lambda s: bool(s.decisions)
    )

    await stack.journeys.order_placed({"customer_id": cid, "order_id": f"{cid}-1", "total": "9"})
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)

    assert result.outcome == "ordered"
    assert result.sent == []
    assert journey_mails(stack.catcher, cid, "cart_recovery") == []


async def test_a_deferral_longer_than_the_longest_wait_is_skipped(make_stack):
    stack = await make_stack(cart_recovery={"steps": cart_steps(on_cap="defer", cap_wait="2h")})
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await emails_from_another_journey(stack, cid, journey="welcome_series", count=2)
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=1))
    state = await eventually(
        lambda: handle.query("state", result_type=JourneyState), lambda s: bool(s.decisions)
    )
    first = state.decisions[0]
    assert (first.status, first.code) == ("skipped", "capped")
    assert "past 2:00:00" in (first.reason or "")
