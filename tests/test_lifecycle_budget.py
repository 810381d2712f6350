"""Touch budgets (journeys/lifecycle.toml [budget.<stage>]) held by the send gate: an email
beyond the customer's stage's budget of care or marketing emails is skipped, or held with
``on_cap = "defer"`` until a new stage allows it; transactional mail is never held by it.
Against the real stack, in virtual time."""

from __future__ import annotations

import asyncio
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from core.contracts import JourneyState
from settings import ROOT
from store.models import Customer
from testkit.data import TEE, abandon_cart, add_customer, email_for, emails_from_another_journey
from testkit.mail import journey_mails, steps_of, wait_for_mail
from testkit.waiting import eventually, settle
from workflows.nurture import NewCustomerNurture

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def cart_steps(**first_step: Any) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = tomllib.loads(
        (ROOT / "journeys" / "cart_recovery.toml").read_text()
    )["steps"]
    steps[0].update(first_step)
    return steps


async def decisions(handle: Any, step: str) -> list[str]:
    state: JourneyState = await handle.query("state", result_type=JourneyState)
    return [f"{d.status}:{d.code}" for d in state.decisions if d.step == step]


async def test_a_care_email_beyond_the_budget_is_skipped_and_a_shipping_notice_still_goes(
    make_stack,
):
    """A new customer's stage allows no care email: the nurture's thank-you (care) is
    skipped, naming the budget; the shipping notice (transactional) goes out."""
    stack = await make_stack(lifecycle={"budget": {"new": {"care": 0, "marketing": 1}}})
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    placed = await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"{cid}-1", "total": "30", "lines": [TEE]}
    )
    handle = stack.client.get_workflow_handle_for(NewCustomerNurture.run, str(placed.workflow_id))
    thanks = await eventually(lambda: decisions(handle, "thanks"), bool)
    assert thanks == ["skipped:touch_budget"]
    state = await handle.query("state", result_type=JourneyState)
    reason = next(d.reason for d in state.decisions if d.step == "thanks")
    assert reason == "touch_budget: care 0 of 0 sent in stage new"

    await stack.journeys.order_shipped({"customer_id": cid, "order_id": f"{cid}-1"})
    await wait_for_mail(stack.catcher, email_for(cid), 1)
    sent = steps_of(journey_mails(stack.catcher, cid, "new_customer_nurture"))
    assert [step.split("_")[0] for step in sent] == ["shipping"]


async def test_a_held_marketing_email_goes_out_when_a_new_stage_allows_it_and_not_before(
    make_stack,
):
    """One marketing email in the new customer's stage spends its budget of one: the cart
    reminder (on_cap = "defer") is held, and goes out once the customer is in a stage with
    room (the sweep moved them), at the next ask."""
    stack = await make_stack(
        lifecycle={"budget": {"new": {"care": 7, "marketing": 1}}},
        cart_recovery={
            "steps": cart_steps(on_cap="defer"),
            "frequency_cap": {"window": "1d", "max_emails": 5},
        },
    )
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await stack.journeys.order_placed({"customer_id": cid, "order_id": f"{cid}-1", "total": "9"})
    await wait_for_mail(stack.catcher, email_for(cid), 1)  # the nurture's thanks: care
    await emails_from_another_journey(stack, cid, journey="browse_follow_up", count=1)
    handle = await abandon_cart(stack, cid, TEE)

    await stack.fast_forward(handle, timedelta(hours=1, minutes=1))
    assert await eventually(lambda: decisions(handle, "reminder_1"), bool) == [
        "deferred:touch_budget"
    ]
    await stack.fast_forward(handle, timedelta(hours=23))  # asked again: still spent
    await settle()
    assert journey_mails(stack.catcher, cid, "cart_recovery") == []

    async with stack.sessions.begin() as s:  # the daily sweep: a week on, "active"
        await s.execute(
            update(Customer)
            .where(Customer.id == cid)
            .values(stage="active", stage_since=datetime.now(UTC))
        )
    await stack.fast_forward(handle, timedelta(days=1))
    mails = await eventually(
        lambda: asyncio.sleep(0, journey_mails(stack.catcher, cid, "cart_recovery")), bool
    )
    assert steps_of(mails)[0] == "reminder_1"
    assert (await decisions(handle, "reminder_1"))[-1] == "sent:None"
