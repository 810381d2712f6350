"""Inputs and results of activities; imported by workflows, so plain data only."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from journeys.config import CouponConfig, FrequencyCap

SendStatus = Literal["sent", "skipped", "held_out", "bounced", "failed"]

# Skip reasons that mean the customer has left the journey for good.
EXIT_REASONS = frozenset({"ordered", "cart_empty", "suppressed", "unsubscribed"})


class SendStepInput(BaseModel):
    journey: str
    workflow_id: str
    run_chain_id: str  # first_execution_run_id: stable across continue-as-new, new per reuse
    step: str
    template: str
    subject: str
    customer_id: str
    entered_at: datetime  # "ordered since entering" is counted from here
    now: datetime  # the journey's clock at the decision (workflow.now())
    holdout_share: float = 0.0
    frequency_cap: FrequencyCap = FrequencyCap()
    coupon: CouponConfig | None = None
    requires_active_cart: bool = False

    @property
    def idempotency_key(self) -> str:
        return f"{self.workflow_id}:{self.run_chain_id}:{self.step}"


class SendOutcome(BaseModel):
    status: SendStatus
    reason: str | None = None
    message_id: str | None = None
    already_done: bool = False  # True when a retry found the decision recorded before

    @property
    def ends_journey(self) -> bool:
        if self.status == "bounced":
            return True
        return self.status == "skipped" and (self.reason or "").split(":")[0] in EXIT_REASONS
