"""Holiday greeting: one email with a gift on the holiday (started here as the lifecycle
sweep starts it: core.starting with the per-holiday-and-year id)."""

from __future__ import annotations

from datetime import UTC, datetime

from core.contracts import HolidayInput
from core.ids import holiday_id
from core.starting import start_journey
from histories.common import Branch, Handle
from journeys.config import HolidayConfig
from testkit.data import add_customer
from testkit.stack import Stack
from workflows.holidays import HolidayGreeting

JOURNEY = "holidays"


async def holiday_greeted(stack: Stack, cid: str) -> Handle:
    """Christmas Day where they live (it is about 11:00 there: no quiet hours)."""
    await add_customer(stack, cid)
    day = datetime.now(UTC).date()
    wf_id = holiday_id(cid, "Christmas Day", day.year)
    config = stack.journeys.config("holidays", HolidayConfig)
    await start_journey(
        stack.client,
        HolidayInput(customer_id=cid, config=config, holiday="Christmas Day", day=day),
        task_queue=stack.settings.temporal_task_queue,
        run_id=wf_id,
    )
    handle: Handle = stack.client.get_workflow_handle_for(HolidayGreeting.run, wf_id)
    return handle


BRANCHES = {
    "holiday_greeted": Branch(holiday_greeted, "greeted", ["greeting"]),
}
