"""Birthday greeting, started by the daily sweep on the customer's birthday where they live
(on a store of its own: the sweep looks at every customer in its store)."""

from __future__ import annotations

from core.ids import birthday_id
from histories.common import Branch, Handle, check
from histories.daily_sweep import birthday_today, sweep, today
from testkit.stack import Stack
from workflows.birthday import BirthdayGreeting

JOURNEY = "birthday"


async def greeted(stack: Stack, cid: str) -> Handle:
    """Their birthday today (told by identify): the day's sweep starts the greeting, which goes
    out at once with its gift coupon."""
    as_of = today()
    year = await birthday_today(stack, cid, as_of=as_of)
    _, result = await sweep(stack, f"daily-sweep:{cid}", as_of=as_of)
    started = {phase: count.started for phase, count in result.counts.items()}
    check(started.get("birthday") == 1 == sum(started.values()), f"{cid}: started {started}")
    handle: Handle = stack.client.get_workflow_handle_for(
        BirthdayGreeting.run, birthday_id(cid, year)
    )
    return handle


BRANCHES = {
    "greeted": Branch(greeted, "greeted", ["greeting"], own_store=True),
}
