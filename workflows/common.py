"""Mechanics every journey shares: the send gate call, waiting with early wake-up,
search attributes, and the state a query returns. Deterministic code only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        EXIT_REASONS,
        CustomerLeft,
        DecisionInput,
        Engagement,
        FactsInput,
        JourneyFacts,
        JourneyInput,
        JourneyResult,
        JourneyState,
        SendOutcome,
        SendStepInput,
        StepRecord,
        TagInput,
    )
    from core.ids import JOURNEY_OUTCOME, JOURNEY_STEP
    from journeys.config import StepConfig


SEND_ACTIVITY_TIMEOUT = timedelta(seconds=30)


class JourneyRun:
    """One customer's pass through one journey, seen from inside its workflow."""

    def __init__(self, inp: JourneyInput) -> None:
        info = workflow.info()
        self.config = inp.config
        self.customer_id = inp.customer_id
        self.workflow_id = info.workflow_id
        self.run_chain_id = info.first_execution_run_id
        self.state = JourneyState(
            journey=inp.config.name,
            customer_id=inp.customer_id,
            entered_at=workflow.now(),
            step="entered",
        )
        # Operators pause and resume runs (python -m starter pause ...): sends are held, not
        # lost. Registered here so that every journey has them without repeating them.
        self.paused_by: str | None = None
        self.resumes = 0
        workflow.set_signal_handler("pause", self._pause)
        workflow.set_signal_handler("resume", self._resume)
        workflow.set_signal_handler("wake", self._wake)  # a paused journey was resumed

    def _pause(self, why: Any = None) -> None:
        reason = why.get("reason") if isinstance(why, dict) else None
        self.paused_by = str(reason or "operator")
        self.state.paused = self.paused_by

    def _resume(self, _: Any = None) -> None:
        self.paused_by, self.state.paused = None, None
        self.resumes += 1

    def _wake(self, _: Any = None) -> None:
        self.resumes += 1

    @property
    def entered_at(self) -> datetime:
        return self.state.entered_at

    def at_step(
        self, step: str, *, next_step: str | None = None, next_at: datetime | None = None
    ) -> None:
        self.state.step, self.state.next_step, self.state.next_at = step, next_step, next_at
        workflow.upsert_search_attributes([JOURNEY_STEP.value_set(step)])

    async def wait_until(
        self,
        when: datetime,
        *,
        step: StepConfig,
        wake: Callable[[], bool],
        summary: str | None = None,
    ) -> bool:
        """Sleep until ``when``; True if ``wake`` became true first."""
        self.at_step(f"waiting:{step.name}", next_step=step.name, next_at=when)
        delay = when - workflow.now()
        if wake():
            return True
        if delay <= timedelta(0):
            return False
        try:
            await workflow.wait_condition(
                wake,
                timeout=delay,
                timeout_summary=summary or f"wait until {step.name} ({step.after} in)",
            )
        except TimeoutError:
            return False
        return True

    async def send(
        self,
        step: StepConfig,
        *,
        requires_active_cart: bool = False,
        template: str | None = None,
        context: dict[str, Any] | None = None,
        ignore_order_id: str | None = None,
        order_skus: list[str] | None = None,
        wake: Callable[[], bool] = lambda: False,
    ) -> SendOutcome:
        """Pass ``step`` through the send gate and send it; every decision is recorded.
        Quiet hours move the send to their end; if ``wake`` becomes true meanwhile, the send
        is dropped (skipped, "left during quiet hours")."""
        while True:
            if self.paused_by is not None:
                self.at_step(f"paused:{step.name}", next_step=step.name)
                await workflow.wait_condition(lambda: self.paused_by is None or wake())
                if wake():
                    outcome = SendOutcome(status="skipped", reason="left while paused")
                    break
            resumes = self.resumes
            outcome = await self._send_once(
                step,
                template=template or step.template,
                requires_active_cart=requires_active_cart,
                context=context or {},
                ignore_order_id=ignore_order_id,
                order_skus=order_skus,
            )
            self.state.decisions.append(
                StepRecord(
                    step=step.name, status=outcome.status, reason=outcome.reason, at=workflow.now()
                )
            )
            if outcome.status != "deferred" or outcome.retry_at is None:
                break
            woke = await self.wait_until(
                outcome.retry_at,
                step=step,
                wake=lambda r=resumes: wake() or self.resumes != r,  # type: ignore[misc]
                summary=f"{(outcome.reason or 'deferred').split(':')[0]}: "
                f"{step.name} moves to {outcome.retry_at:%Y-%m-%d %H:%M} UTC",
            )
            if woke and wake():
                outcome = SendOutcome(status="skipped", reason="left while deferred")
                break
        self.at_step(f"{outcome.status}:{step.name}")
        workflow.logger.info(
            "%s %s: %s%s",
            self.config.name,
            step.name,
            outcome.status,
            f" ({outcome.reason})" if outcome.reason else "",
            extra={"customer_id": self.customer_id},
        )
        return outcome

    async def _send_once(
        self,
        step: StepConfig,
        *,
        template: str,
        requires_active_cart: bool,
        context: dict[str, Any],
        ignore_order_id: str | None,
        order_skus: list[str] | None,
    ) -> SendOutcome:
        self.at_step(f"sending:{step.name}")
        retry = self.config.send_retry
        quiet = self.config.quiet_hours
        outcome: SendOutcome = await workflow.execute_activity(
            "send_step",
            SendStepInput(
                journey=self.config.name,
                workflow_id=self.workflow_id,
                run_chain_id=self.run_chain_id,
                step=step.name,
                template=template,
                subject=step.subject,
                customer_id=self.customer_id,
                entered_at=self.entered_at,
                now=workflow.now(),
                holdout_share=self.config.holdout_share,
                frequency_cap=self.config.frequency_cap,
                coupon=step.coupon,
                requires_active_cart=requires_active_cart,
                transactional=step.transactional,
                quiet_hours=quiet if quiet.enabled and not step.transactional else None,
                check_orders=step.on_order != "send",
                ignore_order_id=ignore_order_id,
                order_skus=order_skus,
                context=context,
            ),
            result_type=SendOutcome,
            start_to_close_timeout=SEND_ACTIVITY_TIMEOUT,
            schedule_to_close_timeout=retry.give_up_after,
            retry_policy=RetryPolicy(
                initial_interval=retry.initial_interval,
                backoff_coefficient=retry.backoff,
                maximum_interval=retry.maximum_interval,
                non_retryable_error_types=["UnknownCustomer", "TemplateError"],
            ),
            summary=f"send {step.name} ({template})",
        )
        return outcome

    def leaves(self, step: StepConfig, outcome: SendOutcome) -> bool:
        """Does this send decision end the journey? (An order only where the step says so.)"""
        if outcome.status == "bounced":
            return True
        if outcome.status != "skipped":
            return False
        reason = (outcome.reason or "").split(":")[0]
        if reason == "ordered":
            return step.on_order == "exit"
        return reason in EXIT_REASONS

    def sent_since(self, since: datetime) -> int:
        return sum(1 for d in self.state.decisions if d.status == "sent" and d.at >= since)

    def skip(self, step: StepConfig, reason: str) -> None:
        """Record a step the journey itself decided not to send."""
        self.state.decisions.append(
            StepRecord(step=step.name, status="skipped", reason=reason, at=workflow.now())
        )

    async def facts(
        self,
        *,
        ignore_order_id: str | None = None,
        order_skus: list[str] | None = None,
        view_sku: str | None = None,
        views_after_step: str | None = None,
    ) -> JourneyFacts:
        """What the store says the customer did since entering (orders, opens, clicks)."""
        prefix = f"{self.workflow_id}:{self.run_chain_id}:"
        facts: JourneyFacts = await workflow.execute_activity(
            "journey_facts",
            FactsInput(
                customer_id=self.customer_id,
                since=self.entered_at,
                send_key_prefix=prefix,
                ignore_order_id=ignore_order_id,
                order_skus=order_skus,
                view_sku=view_sku,
                views_after_send=f"{prefix}{views_after_step}" if views_after_step else None,
            ),
            result_type=JourneyFacts,
            start_to_close_timeout=SEND_ACTIVITY_TIMEOUT,
            summary="read what the customer did",
        )
        return facts

    async def decide(self, name: str, value: str, reason: str) -> str:
        """Record a branch taken, in the state (query) and in the store (explain)."""
        self.state.branches[name] = f"{value}: {reason}"
        workflow.logger.info(
            "%s branch %s = %s (%s)",
            self.config.name,
            name,
            value,
            reason,
            extra={"customer_id": self.customer_id},
        )
        workflow.upsert_search_attributes([JOURNEY_STEP.value_set(f"branch:{value}")])
        await workflow.execute_activity(
            "record_decision",
            DecisionInput(
                customer_id=self.customer_id,
                journey=self.config.name,
                workflow_id=self.workflow_id,
                run_chain_id=self.run_chain_id,
                name=name,
                value=value,
                reason=reason,
                at=workflow.now(),
            ),
            start_to_close_timeout=SEND_ACTIVITY_TIMEOUT,
            summary=f"record branch {name} = {value}",
        )
        return value

    async def tag(self, tag: str) -> None:
        await workflow.execute_activity(
            "tag_customer",
            TagInput(customer_id=self.customer_id, tag=tag),
            start_to_close_timeout=SEND_ACTIVITY_TIMEOUT,
            summary=f"tag customer {tag}",
        )

    def note_engagement(self, engagement: Engagement) -> None:
        if len(self.state.engagements) < 50:  # bounded: history and state stay small
            self.state.engagements.append(engagement)

    def finish(self, outcome: str) -> JourneyResult:
        self.state.outcome = outcome
        self.state.step, self.state.next_step, self.state.next_at = "ended", None, None
        workflow.upsert_search_attributes(
            [JOURNEY_STEP.value_set("ended"), JOURNEY_OUTCOME.value_set(outcome)]
        )
        return JourneyResult(
            outcome=outcome,
            sent=[d.step for d in self.state.decisions if d.status == "sent"],
            decisions=self.state.decisions,
        )


class JourneyWorkflow:
    """What every journey workflow has: the ``customer_left`` and ``engaged`` signals, the
    ``state`` query, and "send this step, and end the journey if the decision says so".
    A journey class derives from it and calls ``self._begin(inp)`` in its ``__init__``."""

    _journey: JourneyRun
    _exit: str | None

    def _begin(self, inp: JourneyInput) -> None:
        self._journey = JourneyRun(inp)
        self._exit = None

    @workflow.signal
    def customer_left(self, left: CustomerLeft) -> None:
        self._exit = left.reason

    @workflow.signal
    def engaged(self, engagement: Engagement) -> None:
        self._journey.note_engagement(engagement)

    @workflow.query
    def state(self) -> JourneyState:
        return self._journey.state

    def _leaving(self) -> bool:
        return self._exit is not None

    async def _send(
        self,
        step: StepConfig,
        *,
        ordered_outcome: str = "ordered",
        wake: Callable[[], bool] | None = None,
        **send: Any,
    ) -> JourneyResult | None:
        """Send ``step``; a result when the journey ends here (left meanwhile, or the
        decision ends it: an order where the step says so, suppression, bounce...)."""
        j = self._journey
        result = await j.send(step, wake=wake or self._leaving, **send)
        if self._exit:
            return j.finish(self._exit)
        if j.leaves(step, result):
            reason = outcome_of(result)
            return j.finish(ordered_outcome if reason == "ordered" else reason)
        return None


def outcome_of(result: SendOutcome) -> str:
    """The journey outcome when a send decision ends the journey."""
    if result.status == "bounced":
        return "bounced"
    return (result.reason or "ended").split(":")[0]
