"""Mechanics every journey shares: the send gate call, waiting with early wake-up,
search attributes, and the state a query returns. Deterministic code only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from activities.types import SendOutcome, SendStepInput
    from journeys.config import JourneyConfig, StepConfig

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
JOURNEY = SearchAttributeKey.for_keyword("Journey")
JOURNEY_STEP = SearchAttributeKey.for_keyword("JourneyStep")
JOURNEY_OUTCOME = SearchAttributeKey.for_keyword("JourneyOutcome")
SEARCH_ATTRIBUTES = (CUSTOMER_ID, JOURNEY, JOURNEY_STEP, JOURNEY_OUTCOME)

SEND_ACTIVITY_TIMEOUT = timedelta(seconds=30)


class JourneyInput(BaseModel):
    customer_id: str
    config: JourneyConfig


class CustomerLeft(BaseModel):
    """Signal ``customer_left``: unsubscribed, complained or hard-bounced; leave now."""

    reason: str


class Engagement(BaseModel):
    """Signal ``engaged``: the customer opened or clicked one of our emails."""

    kind: str  # opened | clicked
    step: str | None = None
    url: str | None = None


class StepRecord(BaseModel):
    step: str
    status: str
    reason: str | None = None
    at: datetime


class JourneyState(BaseModel):
    """What the ``state`` query returns: where the run is and what it did."""

    journey: str
    customer_id: str
    entered_at: datetime
    step: str
    next_step: str | None = None
    next_at: datetime | None = None
    decisions: list[StepRecord] = []
    engagements: list[Engagement] = []
    outcome: str | None = None


class JourneyResult(BaseModel):
    outcome: str
    sent: list[str]
    decisions: list[StepRecord]


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

    @property
    def entered_at(self) -> datetime:
        return self.state.entered_at

    def at_step(
        self, step: str, *, next_step: str | None = None, next_at: datetime | None = None
    ) -> None:
        self.state.step, self.state.next_step, self.state.next_at = step, next_step, next_at
        workflow.upsert_search_attributes([JOURNEY_STEP.value_set(step)])

    async def wait_until(
        self, when: datetime, *, step: StepConfig, wake: Callable[[], bool]
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
                wake, timeout=delay, timeout_summary=f"wait until {step.name} ({step.after} in)"
            )
        except TimeoutError:
            return False
        return True

    async def send(self, step: StepConfig, *, requires_active_cart: bool = False) -> SendOutcome:
        """Pass ``step`` through the send gate and send it; the decision is recorded."""
        self.at_step(f"sending:{step.name}")
        retry = self.config.send_retry
        outcome: SendOutcome = await workflow.execute_activity(
            "send_step",
            SendStepInput(
                journey=self.config.name,
                workflow_id=self.workflow_id,
                run_chain_id=self.run_chain_id,
                step=step.name,
                template=step.template,
                subject=step.subject,
                customer_id=self.customer_id,
                entered_at=self.entered_at,
                now=workflow.now(),
                holdout_share=self.config.holdout_share,
                frequency_cap=self.config.frequency_cap,
                coupon=step.coupon,
                requires_active_cart=requires_active_cart,
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
            summary=f"send {step.name} ({step.template})",
        )
        self.state.decisions.append(
            StepRecord(
                step=step.name, status=outcome.status, reason=outcome.reason, at=workflow.now()
            )
        )
        self.at_step(f"{outcome.status}:{step.name}")
        return outcome

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


def outcome_of(result: SendOutcome) -> str:
    """The journey outcome when a send decision ends the journey."""
    if result.status == "bounced":
        return "bounced"
    return (result.reason or "ended").split(":")[0]


__all__ = ["SEARCH_ATTRIBUTES", "JourneyInput", "JourneyResult", "JourneyRun", "JourneyState"]
