"""What operators rely on: finding runs, explaining decisions, cancel, pause, logs, metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from datetime import timedelta

import httpx
import pytest
from temporalio import workflow
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from core.ids import JOURNEY_OUTCOME, JOURNEY_STEP
from core.zones import zone_at_local_hour
from devstack.catcher import free_port
from observability import JsonFormatter, runtime_with_metrics
from settings import Settings
from starter import ops
from starter.http import create_app
from testkit.data import TEE, abandon_cart, add_customer, email_for, emails_from_another_journey
from testkit.mail import journey_mails, steps_of, wait_for_mail
from testkit.waiting import PATIENCE, eventually, eventually_passes
from worker import WORKFLOWS
from workflows.cart_recovery import CartRecovery

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def runs_of(stack, cid: str, **kw):
    """Visibility is eventually consistent: wait until the runs show up."""
    return await eventually(lambda: ops.customer_runs(stack.client, cid, **kw), bool)


async def test_an_operator_finds_a_customers_runs_with_step_and_next_action(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await stack.journeys.signed_up({"customer_id": cid})
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))

    async def listed():  # the step is a search attribute: visibility catches up with the run
        runs = await ops.customer_runs(stack.client, cid)
        assert {r.workflow_id for r in runs} == {f"cart-recovery:{cid}", f"welcome-series:{cid}"}
        cart = next(r for r in runs if r.journey == "cart_recovery")
        assert cart.status == "RUNNING" and cart.step == "waiting:reminder_2"
        assert cart.state is not None and cart.state.next_step == "reminder_2"
        return runs

    for run in await eventually_passes(listed):
        await stack.client.get_workflow_handle(run.workflow_id).terminate("test done")


async def test_explain_lists_every_send_decision_with_its_reason(stack):
    cid = stack.new_customer_id()
    late = zone_at_local_hour(23)
    await add_customer(stack, cid, timezone=late)
    await stack.journeys.signed_up({"customer_id": cid})  # 23:00 there: deferred
    await asyncio.sleep(0.5)
    await emails_from_another_journey(stack, cid, journey="browse_follow_up", count=2)
    await abandon_cart(stack, cid, TEE)
    cart = stack.client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{cid}")
    await stack.fast_forward(cart, timedelta(hours=1, minutes=5))  # capped by the 2 above

    async def explained():  # held sends are found through visibility: eventually consistent
        x = await ops.explain(stack.sessions, stack.client, cid)
        decisions = {(r.journey, r.step): (r.status, r.reason) for r in x.sends}
        status, reason = decisions[("cart_recovery", "reminder_1")]
        assert status == "skipped" and (reason or "").startswith("capped")
        (held,) = x.held
        assert held["journey"] == "welcome_series" and held["reason"].startswith("quiet_hours")
        assert x.customer is not None and x.suppression is None

    await eventually_passes(explained)
    await ops.cancel(stack.client, cid)


async def test_cancel_ends_a_customers_running_journeys(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)
    await runs_of(stack, cid)
    assert await ops.cancel(stack.client, cid) == [f"cart-recovery:{cid}"]
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert (await handle.describe()).status.name == "CANCELED"


async def test_a_paused_customer_gets_nothing_until_resumed_and_nothing_is_lost(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)
    await runs_of(stack, cid)
    assert await ops.pause_customer(stack.client, cid, paused=True) == [f"cart-recovery:{cid}"]
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    await asyncio.sleep(0.5)
    assert stack.catcher.to(email_for(cid)) == []
    assert (await handle.query(CartRecovery.state)).paused == "operator"

    await ops.pause_customer(stack.client, cid, paused=False)
    mails = await wait_for_mail(stack.catcher, email_for(cid), 1)
    assert steps_of(mails) == ["reminder_1"]
    await handle.terminate("test done")


async def test_a_paused_journey_holds_its_sends_until_resumed(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await ops.pause_journey(stack.sessions, stack.client, "cart_recovery", paused=True)
    try:
        handle = await abandon_cart(stack, cid, TEE)
        await runs_of(stack, cid)  # resuming finds the journey's runs through visibility
        await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
        state = await handle.query(CartRecovery.state)
        assert state.decisions[-1].status == "deferred"
        assert state.decisions[-1].reason.startswith("paused: journey cart_recovery")
        assert stack.catcher.to(email_for(cid)) == []
    finally:
        woken = await ops.pause_journey(stack.sessions, stack.client, "cart_recovery", paused=False)
    assert woken >= 1
    mails = await wait_for_mail(stack.catcher, email_for(cid), 1)
    assert (
        steps_of(journey_mails(stack.catcher, cid, "cart_recovery"))
        == ["reminder_1"]
        == steps_of(mails)
    )
    await handle.terminate("test done")


async def test_worker_log_lines_carry_workflow_and_customer(stack, caplog):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    with caplog.at_level(logging.INFO):
        handle = await abandon_cart(stack, cid, TEE)
        await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
        await wait_for_mail(stack.catcher, email_for(cid), 1)
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    sent = [line for line in lines if line["message"].startswith(f"sent cart-recovery:{cid}")]
    assert sent and sent[0]["workflow_id"] == f"cart-recovery:{cid}"
    assert sent[0]["customer_id"] == cid and sent[0]["activity_type"] == "send_step"
    await handle.terminate("test done")


@workflow.defn(name="MetricsProbe", sandboxed=False)
class MetricsProbe:
    @workflow.run
    async def run(self) -> str:
        return "ok"


async def test_sdk_metrics_are_exposed_for_prometheus(temporal_env, db_url):
    bind = f"127.0.0.1:{free_port()}"
    runtime = runtime_with_metrics(Settings(environment="test", metrics_bind=bind))
    assert runtime is not None
    target = temporal_env.client.service_client.config.target_host
    client = await Client.connect(target, runtime=runtime, data_converter=pydantic_data_converter)
    async with Worker(client, task_queue="metrics-probe", workflows=[MetricsProbe]):
        await client.execute_workflow(
            MetricsProbe.run, id="metrics-probe", task_queue="metrics-probe"
        )
    body = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://{bind}/metrics", timeout=5).read().decode()
    )
    assert "temporal_workflow_completed" in body


async def test_healthz_says_whether_a_worker_polls_the_task_queue(stack):
    app = create_app(stack.settings, journeys=stack.journeys)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://shop.test"
    ) as http:
        polled = await eventually(lambda: http.get("/healthz"), lambda a: a.status_code == 200)
    assert polled.json()["workers"] == "ok" and polled.json()["worker_pollers"] >= 1

    nobody = stack.settings.model_copy(update={"temporal_task_queue": "nobody-polls-this"})
    app = create_app(nobody, journeys=stack.journeys)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://shop.test"
    ) as http:
        answer = await http.get("/healthz")
    assert answer.status_code == 503
    assert answer.json() == {
        "temporal": "ok",
        "database": "ok",
        "smtp": "ok",
        "workers": "error: no worker polls nobody-polls-this",
        "worker_pollers": 0,
    }


async def _current(handle) -> tuple[str, str]:
    """JourneyStep (from the run's mutable state) and the UI's Current Details."""
    described = await handle.describe()
    details = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return described.typed_search_attributes.get(JOURNEY_STEP), details.current_details


async def test_journey_step_and_current_details_follow_pause_resume_and_cancel(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)
    step, details = await eventually(lambda: _current(handle), lambda c: bool(c[0]))
    assert step == "waiting:reminder_1"
    assert details.startswith("waiting until ") and details.endswith(" UTC, then reminder_1")

    await ops.pause_customer(stack.client, cid, paused=True, reason="ticket 7")
    step, details = await eventually(lambda: _current(handle), lambda c: "paused" in (c[0] or ""))
    assert step == "paused:reminder_1"
    assert details.startswith("paused by an operator (ticket 7); sends are held; waiting until")

    await ops.pause_customer(stack.client, cid, paused=False)
    step, details = await eventually(
        lambda: _current(handle), lambda c: "paused" not in (c[0] or "paused")
    )
    assert step == "waiting:reminder_1" and details.startswith("waiting until ")

    await ops.cancel(stack.client, cid)
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(JOURNEY_STEP) == "cancelled" and attrs.get(JOURNEY_OUTCOME) == "cancelled"
    # the new path (behind its patch) replays
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)
    await replayer.replay_workflow(await handle.fetch_history())
