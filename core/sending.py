"""What one send of one step asks the gate: built in one place, from the journey's config and
the step, for the workflows' send path and the bench alike (so both treat quiet hours,
the cap, the holdout and "ordered since entering" the same way)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from core.contracts import SendStepInput
from journeys.config import JourneyConfig, StepConfig

# Timeouts of the send activity, which fit together (docs/decisions/0002-send-idempotency.md):
# - start-to-close is longer than the whole SMTP path (waiting for a pool connection,
#   connecting and logging in, MAIL/RCPT/DATA, the reply to the dot: worker.py checks the
#   settings against it at start);
# - the activity heartbeats, so a killed worker's attempt is retried after SEND_HEARTBEAT,
#   not after start-to-close;
# - a claim's lease is longer than start-to-close: once it has run out, the attempt that
#   took it is over whatever happened to it, and only then may a "resend" send again.
SEND_START_TO_CLOSE = timedelta(minutes=10)
SEND_HEARTBEAT = timedelta(seconds=20)
CLAIM_LEASE = SEND_START_TO_CLOSE + timedelta(minutes=1)


def send_step_input(
    config: JourneyConfig,
    step: StepConfig,
    *,
    workflow_id: str,
    run_chain_id: str,
    customer_id: str,
    entered_at: datetime,
    now: datetime,
    template: str | None = None,
    requires_active_cart: bool = False,
    ignore_order_id: str | None = None,
    order_skus: list[str] | None = None,
    context: dict[str, Any] | None = None,
    due_at: datetime | None = None,
) -> SendStepInput:
    """The gate's input for ``step``: transactional steps skip quiet hours; a step with
    ``on_order = "send"`` goes out whatever was ordered (no order check)."""
    # Texts keep their own (stricter) quiet hours, transactional ones too.
    sms = step.channel == "sms"
    quiet = config.sms_quiet_hours if sms else config.quiet_hours
    return SendStepInput(
        journey=config.name,
        workflow_id=workflow_id,
        run_chain_id=run_chain_id,
        step=step.name,
        template=template or step.template,
        subject=step.subject,
        customer_id=customer_id,
        entered_at=entered_at,
        now=now,
        holdout_share=config.holdout_share,
        frequency_cap=config.frequency_cap,
        stage_caps=config.stage_caps,
        stage_budgets=config.stage_budgets,
        care_journeys=config.care_journeys,
        on_cap=step.on_cap,
        cap_wait=step.cap_wait,
        due_at=due_at,
        coupon=step.coupon,
        requires_active_cart=requires_active_cart,
        transactional=step.transactional,
        quiet_hours=quiet if quiet.enabled and (sms or not step.transactional) else None,
        channel=step.channel,
        check_orders=step.on_order != "send",
        ignore_order_id=ignore_order_id,
        order_skus=order_skus,
        context=context or {},
        on_uncertain=config.on_uncertain,
        step_holdout_share=step.holdout_share,
        variants=step.variants,
        auto_winner=step.auto_winner,
    )
