"""The path that does not depend on experimental time skipping: a plain dev server, real
time, delays shrunk by JOURNEY_SPEEDUP in the starter (as demos and black-box runs do)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core.ids import SEARCH_ATTRIBUTES
from settings import Settings, temporal_cli
from starter.api import Journeys
from tests.helpers import TEE, abandon_cart, add_customer, email_for, wait_for_mail
from worker import build_worker, make_mailer


@pytest.fixture(scope="module")
async def plain_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=temporal_cli(Settings()),
        dev_server_extra_args=[
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ],
    )
    async with env:
        yield env


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_speedup_runs_the_journey_in_real_time_on_a_plain_server(
    plain_env, catcher, sessions, db_url, journeys_dir
):
    settings = Settings(
        environment="test",
        temporal_task_queue="plain-speedup",
        database_url=db_url,
        smtp_host=catcher.host,
        smtp_port=catcher.port,
        public_base_url="https://shop.test",
        journeys_dir=journeys_dir(),
        journey_speedup=3600,  # 1 h -> 1 s, 2 days -> 48 s
    )
    mailer = make_mailer(settings)
    journeys = Journeys(client=plain_env.client, sessions=sessions, settings=settings)

    stack = SimpleNamespace(journeys=journeys, client=plain_env.client)
    cid = "plain-" + settings.temporal_task_queue
    async with build_worker(plain_env.client, settings=settings, sessions=sessions, mailer=mailer):
        await add_customer(stack, cid)
        handle = await abandon_cart(stack, cid, TEE)
        mails = await wait_for_mail(catcher, email_for(cid), 1, seconds=30)
        assert [m["X-Journey"] for m in mails] == ["cart_recovery/reminder_1"]

        await journeys.order_placed({"customer_id": cid, "order_id": f"o-{cid}", "total": "39.80"})
        result = await asyncio.wait_for(handle.result(), timeout=20)
    await mailer.close()
    assert result.outcome == "ordered"
    assert result.sent == ["reminder_1"]
