"""The path that does not depend on experimental time skipping: a plain dev server, real
time, delays shrunk by JOURNEY_SPEEDUP in the starter (as demos and black-box runs do)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment

from testkit.data import TEE, abandon_cart, add_customer, email_for
from testkit.mail import wait_for_mail
from testkit.servers import start_plain_server
from testkit.stack import running_stack, stack_settings
from testkit.waiting import PATIENCE


@pytest.fixture(scope="module")
async def plain_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await start_plain_server() as env:
        yield env


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_speedup_runs_the_journey_in_real_time_on_a_plain_server(
    plain_env, catcher, sessions, db_url, journeys_dir
):
    settings = stack_settings(
        database_url=db_url,
        catcher=catcher,
        journeys_dir=journeys_dir(),
        journey_speedup=3600,  # 1 h -> 1 s, 2 days -> 48 s
    )
    async with running_stack(
        plain_env, settings=settings, sessions=sessions, catcher=catcher
    ) as stack:
        cid = "plain-" + settings.temporal_task_queue
        await add_customer(stack, cid)
        handle = await abandon_cart(stack, cid, TEE)
        mails = await wait_for_mail(catcher, email_for(cid), 1)
        assert [m["X-Journey"] for m in mails] == ["cart_recovery/reminder_1"]

        await stack.journeys.order_placed(
            {"customer_id": cid, "order_id": f"o-{cid}", "total": "39.80"}
        )
        result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.outcome == "ordered"
    assert result.sent == ["reminder_1"]
