"""Inputs and results of activities; imported by workflows, so plain data only."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from journeys.config import CouponConfig, FrequencyCap, QuietHours

SendStatus = Literal["sent", "skipped", "held_out", "bounced", "failed", "deferred"]

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
    transactional: bool = False
    quiet_hours: QuietHours | None = None
    # Which orders count as "ordered since entering": all but ``ignore_order_id`` (the order
    # that started the journey), and only those with one of ``order_skus`` when given.
    check_orders: bool = True
    ignore_order_id: str | None = None
    order_skus: list[str] | None = None
    # Extra data for the template: {"product_sku": ...} adds ``product`` and ``accessories``;
    # {"cross_sell_category": ...} adds ``cross_sell``; anything else is passed as it is.
    context: dict[str, Any] = {}

    @property
    def idempotency_key(self) -> str:
        return f"{self.workflow_id}:{self.run_chain_id}:{self.step}"


class SendOutcome(BaseModel):
    status: SendStatus
    reason: str | None = None
    message_id: str | None = None
    already_done: bool = False  # True when a retry found the decision recorded before
    retry_at: datetime | None = None  # with "deferred": quiet hours end then

    @property
    def ends_journey(self) -> bool:
        if self.status == "bounced":
            return True
        return self.status == "skipped" and (self.reason or "").split(":")[0] in EXIT_REASONS


class FactsInput(BaseModel):
    customer_id: str
    since: datetime
    send_key_prefix: str  # "<workflow id>:<run chain id>:" — this run's emails
    ignore_order_id: str | None = None
    order_skus: list[str] | None = None
    view_sku: str | None = None  # viewed_again: views of this product ...
    views_after_send: str | None = None  # ... after the email of this send key went out


class JourneyFacts(BaseModel):
    """What the store says about the customer since the journey began: branches use it."""

    ordered: bool
    opened: bool
    clicked: bool
    orders_total: int
    has_birthday: bool
    viewed_again: bool = False


class DecisionInput(BaseModel):
    customer_id: str
    journey: str
    workflow_id: str
    run_chain_id: str
    name: str
    value: str
    reason: str
    at: datetime


class TagInput(BaseModel):
    customer_id: str
    tag: str


class SweepPageInput(BaseModel):
    phase: str  # win_back | repeat_purchase | birthday
    as_of: datetime
    after_id: str
    page_size: int
    win_back: Any  # WinBackConfig (typed in workflows/sweep.py; kept loose here)
    birthday: Any  # BirthdayConfig


class SweepPageResult(BaseModel):
    selected: int
    started: int
    next_after: str | None  # None: this phase is done


class SunsetInput(BaseModel):
    customer_id: str
    reason: str
