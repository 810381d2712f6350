"""Worker Versioning behaviours declared by the worker, not by ``@workflow.defn``.

A versioned worker (WORKER_DEPLOYMENT set) tells the server, with every workflow task it
completes, how the run meets a new build: PINNED (it ends on the build it started on) or
AUTO_UPGRADE (it moves to the current build at its next workflow task). The SDK's own way,
``@workflow.defn(versioning_behavior=...)``, is sent by unversioned workers too, and the
server refuses it from them ("versioning behavior cannot be specified without deployment
options being set with versioned mode"): `make run`, the tests, the bench and the fault suite
would stop. So the journeys declare nothing, and a versioned worker wraps its workflow runner
in :class:`DeclaredVersioning`, which sets the behaviour of each workflow type (the table is
``worker.VERSIONING``, decision 0019) on the completions, where the SDK would have set the
decorator's. An unversioned worker uses the plain runner: nothing is declared, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import temporalio.workflow
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.common import VersioningBehavior
from temporalio.converter import SerializationContext, StorageDriverStoreContext
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails, WorkflowRunner
from temporalio.worker._command_aware_visitor import CommandInfo


class DeclaredVersioning(WorkflowRunner):
    """``inner`` (the sandbox), with ``behaviours[workflow class]`` declared on every
    successful workflow task completion of that class's runs. A class left out takes the
    deployment's ``default_versioning_behavior``; a behaviour the workflow declares itself
    (``@workflow.defn``) is kept."""

    def __init__(
        self, inner: WorkflowRunner, behaviours: Mapping[type, VersioningBehavior]
    ) -> None:
        self.inner = inner
        self.behaviours = dict(behaviours)

    def prepare_workflow(self, defn: temporalio.workflow._Definition) -> None:
        self.inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        instance = self.inner.create_instance(det)
        behaviour = self.behaviours.get(det.defn.cls, VersioningBehavior.UNSPECIFIED)
        if behaviour == VersioningBehavior.UNSPECIFIED:
            return instance
        return _Declaring(instance, behaviour)

    def set_worker_level_failure_exception_types(
        self, types: Sequence[type[BaseException]]
    ) -> None:
        self.inner.set_worker_level_failure_exception_types(types)


class _Declaring(WorkflowInstance):
    def __init__(self, inner: WorkflowInstance, behaviour: VersioningBehavior) -> None:
        self.inner = inner
        self.behaviour = behaviour

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        completion = self.inner.activate(act)
        if completion.WhichOneof("status") == "successful":
            success = completion.successful
            if not success.versioning_behavior:  # the decorator's, when it names one
                success.versioning_behavior = self.behaviour.value
        return completion

    def get_serialization_context(
        self, command_info: CommandInfo | None
    ) -> SerializationContext | None:
        return self.inner.get_serialization_context(command_info)

    def get_external_store_context(
        self, command_info: CommandInfo | None
    ) -> StorageDriverStoreContext:
        return self.inner.get_external_store_context(command_info)

    def get_info(self) -> temporalio.workflow.Info:
        return self.inner.get_info()

    def get_thread_id(self) -> int | None:
        return self.inner.get_thread_id()
