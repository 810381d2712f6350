"""VIP care: thanks with a gift at once, tips at day 30, early access at day 60 (started
here as the lifecycle sweep starts it: core.starting with the per-year id)."""

from __future__ import annotations

from datetime import timedelta

from core.contracts import VipCareInput
from core.ids import vip_care_id
from core.starting import start_journey
from histories.common import Branch, Handle
from journeys.config import VipCareConfig
from testkit.data import add_customer
from testkit.stack import Stack
from workflows.vip_care import VipCare

JOURNEY = "vip_care"


async def cared_for(stack: Stack, cid: str) -> Handle:
    """All three emails, in virtual time."""
    await add_customer(stack, cid)
    wf_id = vip_care_id(cid, 2026)
    config = stack.journeys.config("vip_care", VipCareConfig)
    await start_journey(
        stack.client,
        VipCareInput(customer_id=cid, config=config, year=2026, lifecycle_stage="active, vip"),
        task_queue=stack.settings.temporal_task_queue,
        run_id=wf_id,
    )
    handle: Handle = stack.client.get_workflow_handle_for(VipCare.run, wf_id)
    await stack.fast_forward(handle, timedelta(days=60, hours=1))
    return handle


BRANCHES = {
    "cared_for": Branch(cared_for, "completed", ["welcome", "tips", "early_access"]),
}
