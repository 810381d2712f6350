"""Step holdouts: a share of customers skips one step (cart recovery's first reminder) and
walks on to the next; who skips is decided per customer and step, recorded like any other
decision, and the report measures that one email against them, from the would-be send."""

from __future__ import annotations

import asyncio
import tomllib
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from core.rules import in_holdout, in_step_holdout
from settings import ROOT
from starter.reports import journey_report
from store.models import Order, SendLog
from testkit.data import TEE, abandon_cart, add_customer
from testkit.mail import journey_mails, steps_of
from testkit.stack import Stack
from testkit.waiting import eventually

# the report reads every send of the journey: a store of its own (conftest.own_sqlite_url)
pytestmark = [pytest.mark.parametrize("db_url", ["sqlite"], indirect=True), pytest.mark.own_store]
CUSTOMERS = 40
JOURNEY, STEP = "cart_recovery", "reminder_1"


def steps_with(journey: str, **changes: dict[str, Any]) -> list[dict[str, Any]]:
    """The shipped TOML's steps of ``journey`` with some steps' keys changed by name."""
    data = tomllib.loads((ROOT / "journeys" / f"{journey}.toml").read_text())
    steps: list[dict[str, Any]] = data["steps"]
    for step in steps:
        step.update(changes.get(step["name"], {}))
    return steps


async def decisions_of(stack: Stack, ids: list[str], step: str) -> dict[str, SendLog]:
    """The send log's decision of ``step`` per customer, once every customer has one."""

    async def found() -> dict[str, SendLog]:
        async with stack.sessions() as s:
            rows = await s.scalars(
                select(SendLog).where(SendLog.customer_id.in_(ids), SendLog.step == step)
            )
            return {row.customer_id: row for row in rows}

    rows = await eventually(found, lambda got: len(got) == len(ids))
    assert len(rows) == len(ids)
    return rows


async def delivered(stack: Stack, ids: list[str]) -> None:
    """Wait until none of these customers' sends is between its final dot and its recorded
    reply: "read later" (testkit/engagement.py) moves the recorded delivery time back."""

    async def claimed() -> int:
        async with stack.sessions() as s:
            rows = await s.scalars(
                select(SendLog.id).where(SendLog.customer_id.in_(ids), SendLog.status == "sending")
            )
            return len(list(rows))

    assert await eventually(claimed, lambda n: n == 0) == 0


async def test_a_step_holdout_skips_one_step_and_walks_on(make_stack: Any) -> None:
    steps = steps_with(JOURNEY, **{STEP: {"holdout_share": 0.5}})
    stack: Stack = await make_stack(cart_recovery={"steps": steps})
    ids = [stack.new_customer_id() for _ in range(CUSTOMERS)]
    handles = []
    for cid in ids:
        await add_customer(stack, cid)
        handles.append(await abandon_cart(stack, cid, TEE))
    # past the second reminder (day 2)
    await asyncio.gather(*(stack.fast_forward(h, timedelta(days=2, hours=1)) for h in handles))

    first = await decisions_of(stack, ids, STEP)
    await decisions_of(stack, ids, "reminder_2")
    held = {cid for cid in ids if in_step_holdout(cid, JOURNEY, STEP, 0.5)}
    assert 0 < len(held) < CUSTOMERS
    # not the journey's group: each step splits on its own
    assert any(in_holdout(cid, JOURNEY, 0.5) != (cid in held) for cid in ids)
    for cid in ids:
        row = first[cid]
        if cid in held:
            assert (row.status, row.reason_code) == ("held_out", "step_holdout"), cid
            assert row.reason == "step_holdout: 50% of step reminder_1"
            assert steps_of(journey_mails(stack.catcher, cid, JOURNEY)) == ["reminder_2"]
        else:
            assert (row.status, row.reason_code) == ("sent", None), cid
            assert steps_of(journey_mails(stack.catcher, cid, JOURNEY)) == [STEP, "reminder_2"]

    # Orders a day after the first reminder's (would-be) send, for every third customer:
    # the step's report compares the sent with the held out of this step alone.
    buyers = set(ids[::3])
    async with stack.sessions.begin() as s:
        for cid in buyers:
            s.add(
                Order(
                    id=f"o-{cid}",
                    customer_id=cid,
                    total=Decimal("10.00"),
                    currency="EUR",
                    placed_at=first[cid].decided_at + timedelta(days=1),
                )
            )
    since = min(row.decided_at for row in first.values())
    report = await journey_report(stack.sessions, JOURNEY, windows=["2d"], since=since)

    step = next(s for s in report["steps"] if s["step"] == STEP)
    assert step["control"] == "step holdout"
    (window,) = step["windows"]
    treated, control = window["treated"], window["control"]
    assert (control["customers"], control["converted"]) == (len(held), len(buyers & held))
    assert (treated["customers"], treated["converted"]) == (
        CUSTOMERS - len(held),
        len(buyers - held),
    )
    assert control["revenue"] == 10.0 * len(buyers & held)
    later = next(s for s in report["steps"] if s["step"] == "reminder_2")
    assert later["control"] == "journey holdout"
