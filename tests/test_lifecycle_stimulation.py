"""Repeated stimulation of first-time buyers: a first order above the amount, then thanks and
a coupon each month, five rounds over five months in virtual time, each with its 10-day
evaluation window recorded and in the effect report per round; another order ends it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus

from core.contracts import JourneyState
from core.lifecycle import lifecycle_of, load_lifecycle
from starter.reports import journey_report
from store import lifecycle
from store.models import Customer, JourneyDecision
from testkit.data import add_customer, email_for
from testkit.mail import journey_mails, parts, steps_of
from testkit.stack import WRITE_KEY
from testkit.waiting import PATIENCE, eventually, eventually_passes
from workflows.stimulation import RepeatedStimulation

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
ROUNDS = ["round_1", "round_2", "round_3", "round_4", "round_5"]


def at_least(n: int, got: list[str]) -> bool:
    return len(got) >= n


async def first_order(http, cid: str, total: float) -> None:
    auth = {"Authorization": f"Bearer {WRITE_KEY}"}
    answer = await http.post(
        "/v1/track",
        headers=auth,
        json={
            "userId": cid,
            "event": "Order Completed",
            "properties": {"order_id": f"{cid}-1", "total": total, "currency": "EUR"},
        },
    )
    assert answer.status_code == 200


async def rounds_sent(stack, cid: str) -> list[str]:
    return steps_of(journey_mails(stack.catcher, cid, "stimulation"))


async def refresh_stage(stack, cid: str, *, as_of: datetime) -> None:
    """What the daily sweep does for one customer on ``as_of``: the stage as of that day."""
    config = load_lifecycle(stack.settings.journeys_dir)
    async with stack.sessions.begin() as s:
        customer = await s.get(Customer, cid)
        assert customer is not None
        now = lifecycle_of(await lifecycle.facts(s, customer), as_of, config)
        lifecycle.set_stage(customer, stage=now.stage, vip=now.vip, at=as_of)


def handle_of(stack, cid: str):
    return stack.client.get_workflow_handle_for(RepeatedStimulation.run, f"stimulation:{cid}")


async def step_when_idle(handle) -> str | None:
    """The run's step once nothing is under way for it (no pending activity), else None."""
    described = await handle.describe()
    if described.raw_description.pending_activities:
        return None
    if described.status != WorkflowExecutionStatus.RUNNING:
        return "ended"
    state: JourneyState = await handle.query(RepeatedStimulation.state)
    return state.step


def waits_after(month: int, step: str | None) -> bool:
    """The run waits for the next round, or has ended after the last one."""
    return step == (f"waiting:{ROUNDS[month]}" if month < len(ROUNDS) else "ended")


async def where_it_is(stack, handle, cid: str) -> str:
    """Where a run that did not send its round stands (a failure's message): its step and
    decisions, its pending activities, its clock, the customer's stage as stored."""
    state = await handle.query(RepeatedStimulation.state)
    described = await handle.describe()
    pending = [
        (a.activity_type.name, a.attempt, a.last_failure.message)
        for a in described.raw_description.pending_activities
    ]
    info = await stack.env.get_time_skipping_info(handle)
    clock = (
        f"{info.current_time.ToDatetime():%F %T} ({' '.join(str(info.effective_config).split())})"
        if info is not None
        else None
    )
    async with stack.sessions() as s:
        customer = await s.get(Customer, cid)
    assert customer is not None
    decisions = [(d.step, d.status, d.code, d.reason, f"{d.at:%F %T}") for d in state.decisions]
    return (
        f"step {state.step}, next {state.next_step} at {state.next_at}; decisions {decisions}; "
        f"pending activities {pending}; virtual time {clock}; "
        f"stage {customer.stage} since {customer.stage_since}"
    )


async def test_five_monthly_rounds_each_with_a_coupon_and_its_10_day_window(stack, http):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await first_order(http, cid, 80)
    handle = handle_of(stack, cid)
    await eventually_passes(handle.describe)

    ordered_at = datetime.now(UTC)
    for month in range(1, 6):
        # the daily sweep keeps stages (and so touch budgets) current; it runs in production
        # every day and not here, so this customer's stage is brought to the round's day
        await refresh_stage(stack, cid, as_of=ordered_at + timedelta(days=30 * month))
        await stack.fast_forward(handle, timedelta(days=30))
        got = await eventually(lambda: rounds_sent(stack, cid), partial(at_least, month))
        assert got == ROUNDS[:month], await where_it_is(stack, handle, cid)
        # the round's email is caught before its send and its window are recorded: the next
        # month's stage and clock move once the run waits again (or has ended)
        step = await eventually(lambda: step_when_idle(handle), partial(waits_after, month))
        assert waits_after(month, step), await where_it_is(stack, handle, cid)
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)

    assert result.outcome == "completed"
    assert result.sent == ROUNDS
    codes = [parts(m)[0] for m in journey_mails(stack.catcher, cid, "stimulation")]
    assert all("AGAIN-" in text for text in codes)  # a coupon in every round
    async with stack.sessions() as s:
        windows = list(
            await s.scalars(
                select(JourneyDecision).where(
                    JourneyDecision.customer_id == cid, JourneyDecision.journey == "stimulation"
                )
            )
        )
    assert sorted(d.name for d in windows) == ROUNDS
    assert all(d.value == "evaluate" and "10-day window" in (d.reason or "") for d in windows)

    report = await journey_report(stack.sessions, "stimulation", windows=["10d"])
    per_round = {row["step"] for row in report["steps"]}
    assert set(ROUNDS) <= per_round  # the existing report: the 10-day figure per round


async def test_an_order_after_the_second_round_ends_it(stack, http):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await first_order(http, cid, 80)
    handle = handle_of(stack, cid)
    await eventually_passes(handle.describe)
    await stack.fast_forward(handle, timedelta(days=61))
    got = await eventually(lambda: rounds_sent(stack, cid), lambda got: len(got) >= 2)
    assert got == ROUNDS[:2]

    await stack.journeys.order_placed({"customer_id": cid, "order_id": f"{cid}-2", "total": "20"})
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)

    assert result.outcome == "ordered"
    assert result.sent == ROUNDS[:2]


async def test_a_small_first_order_starts_no_rounds(stack, http):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await first_order(http, cid, 20)  # below min_first_order (50)
    x = [wf async for wf in stack.client.list_workflows(f'WorkflowId = "stimulation:{cid}"')]
    assert x == []
    assert email_for(cid)  # (the nurture still starts; not this journey's business)
