"""Repeated stimulation: a first order of at least the journey's amount, then a round
(thanks + coupon) each month, five in all, each with its evaluation window recorded."""

from __future__ import annotations

from datetime import timedelta

from histories.common import Branch, Handle, check
from journeys.config import LIFECYCLE_STAGES
from testkit.data import add_customer
from testkit.stack import Stack
from testkit.waiting import eventually_passes
from workflows.stimulation import RepeatedStimulation

JOURNEY = "stimulation"


async def five_rounds(stack: Stack, cid: str) -> Handle:
    """Nobody comes back: all five rounds, a month apart."""
    await add_customer(stack, cid)
    result = await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"{cid}-1", "total": "80"}
    )
    check(result.action == "started", f"{cid}: {result.action}")
    handle: Handle = stack.client.get_workflow_handle_for(
        RepeatedStimulation.run, f"stimulation:{cid}"
    )
    await eventually_passes(handle.describe)
    await stack.fast_forward(handle, timedelta(days=151))
    return handle


# The shipped lifecycle budget lets a new customer have 2 marketing emails: the branch shows
# all five rounds, so it runs with room for them in every stage.
ROOM_FOR_FIVE = {
    "lifecycle": {"budget": {s: {"care": 7, "marketing": 5} for s in LIFECYCLE_STAGES}}
}

BRANCHES = {
    "five_rounds": Branch(
        five_rounds,
        "completed",
        ["round_1", "round_2", "round_3", "round_4", "round_5"],
        journeys=ROOM_FOR_FIVE,
    ),
}
