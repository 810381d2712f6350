"""The one base every journey workflow stands on: its signals and query, the one send path,
the waits, and the one way to leave. Deterministic code only.

A journey module holds its timeline and nothing else: ``timeline`` returns the outcome when
the journey runs to its end, and the base ends it early when it must (the customer left, an
order arrived where the step says so, a bounce, ...). Every send and every wait may end the
journey: they raise :class:`JourneyEnded`, which :meth:`Journey.walk` turns into the result.

Longer than the ~400-line guide, on purpose: :class:`Journey` is one class because the one
send path, the waits and the one way to leave share the run's state (the exit, the step
records, the pause); mixins in several files would spread that state again (issue 11).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, ClassVar, NoReturn

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.records import SEND_ACTIVITY_TIMEOUT, Records

with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        CustomerLeft,
        Engagement,
        EntryInput,
        JourneyInput,
        JourneyResult,
        JourneyState,
        ReasonCode,
        SendGaveUp,
        SendOutcome,
        SendStepInput,
        StepRecord,
        describe,
    )
    from core.ids import JOURNEY_OUTCOME, JOURNEY_STEP
    from core.rules import ends_journey, in_holdout
    from core.sending import SEND_HEARTBEAT, SEND_START_TO_CLOSE, send_step_input
    from journeys.config import StepConfig

ENGAGEMENTS_KEPT = 50  # bounded: history and state stay small
# Texts along email steps (docs/decisions/0015-sms.md): asked only where a config has them.
TEXTS_ALONG = "sms-texts-along-email-steps"
TEXT_STEP_NAME_MAX = 64  # the send log's step column
# How long recording a send that gave up may take before the run goes on without it.
GAVE_UP_RECORD_TIMEOUT = timedelta(hours=1)
# Task-queue priority of a send (Temporal's priority_key: 1 goes first, 5 last, 3 when unset):
# a transactional step ahead of a marketing backlog on the shared queue
# (docs/decisions/0017-scale-out-and-worker-versioning.md).
TRANSACTIONAL_PRIORITY = Priority(priority_key=1)
MARKETING_PRIORITY = Priority(priority_key=3)


def send_priority(transactional: bool) -> Priority:
    """The send activity's priority: ``TRANSACTIONAL_PRIORITY`` or ``MARKETING_PRIORITY``."""
    return TRANSACTIONAL_PRIORITY if transactional else MARKETING_PRIORITY


Condition = Callable[[], bool]
# From issue 18 on, JourneyStep follows a pause ("paused:<step>"), a resume (the step again)
# and a cancel ("cancelled"): extra upserts, so behind this patch.
STEP_FOLLOWS_OPERATORS = "journey-step-follows-pause-and-cancel"
# From issue 19 on (docs/decisions/0024-fewer-history-events.md): the entry is recorded by a
# local activity (one marker instead of three events and a workflow task), and JourneyStep is
# written when the run next waits, once, not each time it changes within a workflow task
# (``sent:reminder_1`` then ``waiting:reminder_2`` in the same task wrote both). Asked once,
# where the run begins: runs begun before it keep their commands.
FEWER_HISTORY_EVENTS = "record-entry-locally-and-one-journey-step-per-task"
# A local activity retries in the worker up to this backoff, then through a timer (the SDK's
# ``local_retry_threshold``): a store outage does not keep a workflow task open.
LOCAL_RETRY_THRESHOLD = timedelta(seconds=10)


class JourneyEnded(Exception):
    """The journey ends here with ``outcome``. Raised by the base's sends and waits (and by
    :meth:`Journey.leave`); caught by :meth:`Journey.walk`, never seen outside the run."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class Journey(Records):
    """One customer's pass through one journey. A journey class derives from it, calls
    ``super().__init__(inp)`` in its ``@workflow.init``, and its ``@workflow.run`` is
    ``return await self.walk(self.timeline(inp))``.

    Signals every journey has: ``customer_left`` (unsubscribe, complaint, hard bounce: leave
    now), ``engaged`` (open/click), and the operators' ``pause``, ``resume`` and ``wake``
    (python -m starter pause ...): sends are held while paused, not lost. Query: ``state``."""

    # The outcome a journey reports when the gate finds an order that ends it.
    ordered_outcome: ClassVar[str] = "ordered"
    # Set where a journey's held sends once ignored its exits (cart recovery): runs that held
    # a send before this patch keep holding until the gate is asked again.
    exit_ends_holds_patch: ClassVar[str | None] = None

    def __init__(self, inp: JourneyInput) -> None:
        info = workflow.info()
        self.config = inp.config
        self.customer_id = inp.customer_id
        self._workflow_id = info.workflow_id
        self._run_chain_id = info.first_execution_run_id
        self._state = JourneyState(
            journey=inp.config.name,
            customer_id=inp.customer_id,
            entered_at=workflow.now(),
            step="entered",
        )
        self._exit: str | None = None
        self._paused_by: str | None = None
        self._resumes = 0
        self._branches: dict[str, str] = {}
        self._holding = False  # a send is held (paused or deferred)
        self._exit_ends_holds: bool | None = None if self.exit_ends_holds_patch else True
        self._step_follows_pause = False  # STEP_FOLLOWS_OPERATORS, asked at the first pause
        self._texts_stopped = False  # STOP: held texts are dropped (signal texts_stopped)
        self._fewer_events = False  # FEWER_HISTORY_EVENTS, asked where the run begins
        self._step_to_show: str | None = None
        self._step_written: str | None = None

    # -- signals and query -----------------------------------------------------------------

    @workflow.signal
    def customer_left(self, left: CustomerLeft) -> None:
        self.exit(left.reason)

    @workflow.signal
    def texts_stopped(self, _: dict[str, Any] | None = None) -> None:
        """The customer's number opted out (STOP): a text held now is dropped at once; the
        gate refuses every later one. Emails go on."""
        self._texts_stopped = True

    @workflow.signal
    def engaged(self, engagement: Engagement) -> None:
        if len(self._state.engagements) < ENGAGEMENTS_KEPT:
            self._state.engagements.append(engagement)

    @workflow.signal
    def pause(self, why: dict[str, Any] | None = None) -> None:
        shown = self._shown_step()
        self._paused_by = str((why or {}).get("reason") or "operator")
        self._state.paused = self._paused_by
        self._step_follows_pause = self._step_follows_pause or workflow.patched(
            STEP_FOLLOWS_OPERATORS
        )
        self._show(was=shown)

    @workflow.signal
    def resume(self, _: dict[str, Any] | None = None) -> None:
        shown = self._shown_step()
        self._paused_by, self._state.paused = None, None
        self._resumes += 1
        self._show(was=shown)

    @workflow.signal
    def wake(self, _: dict[str, Any] | None = None) -> None:
        """A paused journey was resumed: look at held sends again."""
        self._resumes += 1

    @workflow.query
    def state(self) -> JourneyState:
        return self._state

    # -- running and leaving ---------------------------------------------------------------

    async def walk(self, timeline: Awaitable[str]) -> JourneyResult:
        """Run the timeline to its outcome, or to the point where the journey ended."""
        try:
            self._fewer_events = workflow.patched(FEWER_HISTORY_EVENTS)
            if self._fewer_events or workflow.patched("record-entry"):  # older runs: none
                await self._record_entry()
        except BaseException:  # evicted or cancelled first: the timeline never begins
            if inspect.iscoroutine(timeline):
                timeline.close()
            raise
        try:
            outcome = await timeline
        except JourneyEnded as ended:
            outcome = ended.outcome
        except asyncio.CancelledError:  # an operator cancelled the run
            if workflow.patched(STEP_FOLLOWS_OPERATORS):
                self._state.outcome = self._state.step = "cancelled"
                self._state.next_step, self._state.next_at = None, None
                workflow.upsert_search_attributes(
                    [JOURNEY_STEP.value_set("cancelled"), JOURNEY_OUTCOME.value_set("cancelled")]
                )
                workflow.set_current_details("cancelled by an operator")
            raise
        self._state.outcome = outcome
        self._state.step, self._state.next_step, self._state.next_at = "ended", None, None
        workflow.upsert_search_attributes(
            [JOURNEY_STEP.value_set("ended"), JOURNEY_OUTCOME.value_set(outcome)]
        )
        workflow.set_current_details(f"ended: {outcome}")
        return JourneyResult(
            outcome=outcome,
            sent=[d.step for d in self._state.decisions if d.status == "sent"],
            decisions=self._state.decisions,
        )

    async def _record_entry(self) -> None:
        """The entry the effect report counts from: when, and treated or control."""
        share = self.config.holdout_share
        entry = EntryInput(
            customer_id=self.customer_id,
            journey=self.config.name,
            workflow_id=self._workflow_id,
            run_chain_id=self._run_chain_id,
            entered_at=self.entered_at,
            group="control" if in_holdout(self.customer_id, self.config.name, share) else "treated",
            holdout_share=share,
            journey_version=self.config.version,
        )
        if not self._fewer_events:
            await self._record_activity("record_entry", entry, "record the entry")
            return
        await workflow.execute_local_activity(
            "record_entry",
            entry,
            start_to_close_timeout=SEND_ACTIVITY_TIMEOUT,
            local_retry_threshold=LOCAL_RETRY_THRESHOLD,
            summary="record the entry",
        )

    def exit(self, outcome: str) -> None:
        """From a signal: the journey ends with ``outcome`` at once (waits and held sends
        wake; a send in flight finishes first)."""
        self._exit = outcome
        if self._holding:
            self._decide_exit_ends_holds()

    def leave(self, outcome: str) -> NoReturn:
        """From the timeline: end the journey here."""
        raise JourneyEnded(outcome)

    # -- waits -------------------------------------------------------------------------------

    async def wait_until(
        self,
        when: datetime,
        step: StepConfig,
        *,
        also: Condition | None = None,
        summary: str | None = None,
    ) -> bool:
        """Sleep until ``when`` (the state names ``step`` as what comes next); True if
        ``also`` became true first. Ends the journey if the customer leaves meanwhile."""
        woke = await self._sleep(
            when,
            step,
            wake=lambda: self._exit is not None or (also is not None and also()),
            summary=summary,
        )
        if self._exit is not None:
            raise JourneyEnded(self._exit)
        return woke

    async def wait_quiet(
        self, step: StepConfig, *, last_change: Callable[[], datetime], quiet_for: timedelta
    ) -> datetime:
        """Wait until nothing changed for ``quiet_for``: every change (``last_change()``
        moves) restarts the wait. Returns the last change."""

        def changed_since(at: datetime) -> Condition:
            return lambda: last_change() != at

        while True:
            at = last_change()
            if not await self.wait_until(at + quiet_for, step, also=changed_since(at)):
                return last_change()

    async def _sleep(
        self, when: datetime, step: StepConfig, *, wake: Condition, summary: str | None
    ) -> bool:
        self._at_step(f"waiting:{step.name}", next_step=step.name, next_at=when)
        delay = when - workflow.now()
        if wake():
            return True
        if delay <= timedelta(0):
            return False
        self._publish_step()
        try:
            await workflow.wait_condition(
                wake,
                timeout=delay,
                timeout_summary=summary or f"wait until {step.name} ({step.after} in)",
            )
        except TimeoutError:
            return False
        return True

    # -- the one send path -------------------------------------------------------------------

    async def send(
        self,
        step: StepConfig,
        *,
        also: Condition | None = None,
        template: str | None = None,
        context: dict[str, Any] | None = None,
        requires_active_cart: bool = False,
        ignore_order_id: str | None = None,
        order_skus: list[str] | None = None,
    ) -> SendOutcome:
        """Pass ``step`` through the send gate and send it; every decision is recorded.
        Quiet hours and pauses hold the send; leaving (or ``also``) meanwhile drops it.
        Ends the journey when the customer left, or when the decision ends it
        (core.rules.ends_journey: an order only where the step says so)."""

        due = workflow.now()  # a capped send is held at most step.cap_wait from here

        def request() -> SendStepInput:
            return send_step_input(
                self.config,
                step,
                workflow_id=self._workflow_id,
                run_chain_id=self._run_chain_id,
                customer_id=self.customer_id,
                entered_at=self.entered_at,
                now=workflow.now(),
                template=template,
                requires_active_cart=requires_active_cart,
                ignore_order_id=ignore_order_id,
                order_skus=order_skus,
                context=context,
                due_at=due,
            )

        outcome = await self._send_held(step, request, also)
        if self._exit is not None:
            raise JourneyEnded(self._exit)
        if ends_journey(outcome, step):
            raise JourneyEnded(self._outcome_of(outcome))
        await self._texts_along(step, request)
        return outcome

    async def _texts_along(self, step: StepConfig, request: Callable[[], SendStepInput]) -> None:
        """The texts the TOML sends right after ``step`` (``along_with``), each through the
        same gate, with the email's context. A copy of a step made for one occurrence
        (nurture's ``shipping_<shipment>``) takes its texts with the same suffix. Asked only
        where a config has such texts: runs whose config has none issue the same commands."""
        base = step.name
        if all(s.name != base for s in self.config.steps):  # a copy: the step it was made from
            made_from = [s.name for s in self.config.steps if base.startswith(f"{s.name}_")]
            base = max(made_from, key=len, default=base)
        texts = self.config.texts_along(base)
        if not texts or not workflow.patched(TEXTS_ALONG):
            return
        email = request()
        for text in texts:
            copy = text.model_copy(update={"name": _text_name(text.name, step.name[len(base) :])})

            def text_request(t: StepConfig = copy) -> SendStepInput:
                return send_step_input(
                    self.config,
                    t,
                    workflow_id=self._workflow_id,
                    run_chain_id=self._run_chain_id,
                    customer_id=self.customer_id,
                    entered_at=self.entered_at,
                    now=workflow.now(),
                    requires_active_cart=email.requires_active_cart,
                    ignore_order_id=email.ignore_order_id,
                    order_skus=email.order_skus,
                    context=email.context,
                )

            outcome = await self._send_held(copy, text_request, lambda: self._texts_stopped)
            if self._exit is not None:
                raise JourneyEnded(self._exit)
            if ends_journey(outcome, copy):
                raise JourneyEnded(self._outcome_of(outcome))

    def _outcome_of(self, ending: SendOutcome) -> str:
        """The journey's outcome when this send decision ends it."""
        if ending.status == "bounced":
            return "bounced"
        if ending.code == "ordered":
            return self.ordered_outcome
        return ending.code or "ended"

    async def _send_held(
        self, step: StepConfig, request: Callable[[], SendStepInput], also: Condition | None
    ) -> SendOutcome:
        def wake() -> bool:
            return (self._exit is not None and self._exit_ends_holds is True) or (
                also is not None and also()
            )

        def resumed_since(resumes: int) -> Condition:
            return lambda: wake() or self._resumes != resumes

        while True:
            if self._paused_by is not None:
                self._at_step(f"paused:{step.name}", next_step=step.name)
                self._publish_step()
                with self._hold():
                    await workflow.wait_condition(lambda: self._paused_by is None or wake())
                if wake():
                    outcome = SendOutcome(status="skipped", code="left", detail="while paused")
                    break
            resumes = self._resumes
            outcome = await self._send_once(step, request())
            self._record(step, outcome)
            if outcome.status != "deferred" or outcome.retry_at is None:
                break
            with self._hold():
                woke = await self._sleep(
                    outcome.retry_at,
                    step,
                    wake=resumed_since(resumes),
                    summary=f"{outcome.code or 'deferred'}: "
                    f"{step.name} moves to {outcome.retry_at:%Y-%m-%d %H:%M} UTC",
                )
            if woke and wake():
                outcome = SendOutcome(status="skipped", code="left", detail="while deferred")
                break
        self._at_step(f"{outcome.status}:{step.name}")
        workflow.logger.info(
            "%s %s: %s%s",
            self.config.name,
            step.name,
            outcome.status,
            f" ({outcome.reason})" if outcome.reason else "",
            extra={"customer_id": self.customer_id},
        )
        return outcome

    @contextmanager
    def _hold(self) -> Iterator[None]:
        """Around the wait of a held send: an exit pending when it begins, or arriving
        meanwhile (``exit``), is where the held-send patch is asked."""
        self._holding = True
        if self._exit is not None:
            self._decide_exit_ends_holds()
        try:
            yield
        finally:
            self._holding = False

    def _decide_exit_ends_holds(self) -> None:
        """Asked where a pending exit meets a held send, the one place the old and the new
        path part: ``patched`` is False only in runs that held a send before the patch."""
        if self._exit_ends_holds is None and self.exit_ends_holds_patch is not None:
            self._exit_ends_holds = workflow.patched(self.exit_ends_holds_patch)

    async def _send_once(self, step: StepConfig, req: SendStepInput) -> SendOutcome:
        self._at_step(f"sending:{step.name}")
        self._publish_step()
        retry = self.config.send_retry
        try:
            outcome: SendOutcome = await workflow.execute_activity(
                "send_step",
                req,
                result_type=SendOutcome,
                start_to_close_timeout=SEND_START_TO_CLOSE,
                heartbeat_timeout=SEND_HEARTBEAT,
                schedule_to_close_timeout=retry.give_up_after,
                retry_policy=RetryPolicy(
                    initial_interval=retry.initial_interval,
                    backoff_coefficient=retry.backoff,
                    maximum_interval=retry.maximum_interval,
                    non_retryable_error_types=["UnknownCustomer", "TemplateError"],
                ),
                priority=send_priority(step.transactional),
                summary=f"send {step.name} ({req.template})",
            )
        except ActivityError as err:
            return await self._gave_up(req, err)
        return outcome

    async def _gave_up(self, req: SendStepInput, err: ActivityError) -> SendOutcome:
        """The send's retries ran out (a relay or store outage longer than ``give_up_after``)
        or it cannot be sent (bad data): the step is ``failed`` with why, recorded in the
        send log if the store takes it, and the journey goes on."""
        detail = _why(err)
        outcome = SendOutcome(status="failed", code="gave_up", detail=detail)
        try:
            recorded: SendOutcome = await workflow.execute_activity(
                "send_gave_up",
                SendGaveUp(request=req, detail=detail),
                result_type=SendOutcome,
                start_to_close_timeout=SEND_ACTIVITY_TIMEOUT,
                schedule_to_close_timeout=GAVE_UP_RECORD_TIMEOUT,
                summary=f"record that send {req.step} gave up",
            )
        except ActivityError:
            return outcome  # the store is down too: the run's state keeps it
        return recorded

    def _record(self, step: StepConfig, outcome: SendOutcome) -> None:
        self._state.decisions.append(
            StepRecord(
                step=step.name,
                status=outcome.status,
                reason=outcome.reason,
                code=outcome.code,
                at=workflow.now(),
            )
        )

    def skip(self, step: StepConfig, code: ReasonCode, detail: str | None = None) -> None:
        """Record a step the journey itself decided not to send."""
        self._state.decisions.append(
            StepRecord(
                step=step.name,
                status="skipped",
                reason=describe(code, detail),
                code=code,
                at=workflow.now(),
            )
        )

    def _at_step(
        self, step: str, *, next_step: str | None = None, next_at: datetime | None = None
    ) -> None:
        self._state.step, self._state.next_step, self._state.next_at = step, next_step, next_at
        self._set_journey_step(self._shown_step())
        self._show_details()

    def _shown_step(self) -> str:
        """JourneyStep: the step, or ``paused:<step>`` while an operator holds the run (from
        STEP_FOLLOWS_OPERATORS on; before it only a held send said so)."""
        step = self._state.step
        if self._paused_by is None or not self._step_follows_pause:
            return step
        return f"paused:{self._state.next_step or step.split(':', 1)[-1]}"

    def _show(self, *, was: str) -> None:
        """After a pause or resume: JourneyStep again if it changed, and the details."""
        if self._step_follows_pause and self._shown_step() != was:
            self._write_journey_step(self._shown_step())
        self._show_details()

    def _show_details(self) -> None:
        """The UI's "Current Details" (not a command: read through the SDK's metadata query)."""
        s = self._state
        if s.step.startswith("waiting:") and s.next_at is not None:
            text = f"waiting until {s.next_at:%Y-%m-%d %H:%M} UTC, then {s.next_step}"
        else:
            text = s.step.replace(":", " ", 1)
        if self._paused_by is not None:
            text = f"paused by an operator ({self._paused_by}); sends are held; {text}"
        workflow.set_current_details(text)


def _text_name(name: str, suffix: str) -> str:
    """A text's step name with the suffix of its email's copy, within the send log's 64."""
    full = f"{name}{suffix}"
    if len(full) <= TEXT_STEP_NAME_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:16]
    return f"{full[: TEXT_STEP_NAME_MAX - 17]}-{digest}"


def _why(err: BaseException) -> str:
    """What an activity error says, cause by cause: "TimeoutError: activity ScheduleToClose
    timeout <- ApplicationError: SMTP soft at rcpt: 451 ..."."""
    parts: list[str] = []
    cause = err.__cause__
    while cause is not None and len(parts) < 3:
        parts.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__
    return " <- ".join(parts) or str(err)
