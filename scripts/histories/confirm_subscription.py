"""Confirm subscription (double opt-in): the confirmation email, started as a signup with
DOUBLE_OPT_IN on starts it (starter/ingest/opt_in.py), with its signed link."""

from __future__ import annotations

from core.contracts import ConfirmInput
from core.ids import workflow_id
from core.starting import start_journey
from histories.common import Branch, Handle, check
from journeys.config import JourneyConfig
from settings import Settings
from starter.ingest.opt_in import confirm_url
from testkit.data import add_customer
from testkit.stack import Stack
from workflows.confirm_subscription import ConfirmSubscription

JOURNEY = "confirm_subscription"


async def asked(stack: Stack, cid: str) -> Handle:
    """A new customer's signup under double opt-in: one transactional email goes out at
    once with the confirmation link, and the run ends "asked"."""
    await add_customer(stack, cid)
    settings: Settings = stack.settings
    started = await start_journey(
        stack.client,
        ConfirmInput(
            customer_id=cid,
            config=stack.journeys.config(JOURNEY, JourneyConfig),
            confirm_url=confirm_url(settings, cid),
            consent_text=settings.consent_text,
        ),
        task_queue=settings.temporal_task_queue,
    )
    check(started, f"{cid}: the confirmation run did not start")
    handle: Handle = stack.client.get_workflow_handle_for(
        ConfirmSubscription.run, workflow_id(JOURNEY, cid)
    )
    return handle


BRANCHES = {
    "asked": Branch(asked, "asked", ["confirm"]),
}
