"""Contracts between the parts: workflow inputs, signals, query state, results, and the
inputs and outputs of activities. Plain pydantic data, deterministic to import: workflows,
activities and the starter all use these and nothing else to talk to each other.

Payloads recorded in histories are decoded with these classes on replay, so a field is only
ever added with a default (never renamed or retyped) while runs that carry it may be live.

Longer than the ~400-line guide, on purpose: every payload between the parts in one file,
because histories decode with them and the rule above is checked by reading one file.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Literal, get_args

from pydantic import BaseModel, computed_field, model_validator

from core.ids import send_key
from core.lifecycle import LifecycleConfig
from journeys.config import (
    AutoWinner,
    BirthdayConfig,
    BrowseConfig,
    CouponConfig,
    FrequencyCap,
    HolidayConfig,
    JourneyConfig,
    NurtureConfig,
    QuietHours,
    StimulationConfig,
    TouchBudget,
    Variant,
    VipCareConfig,
    WelcomeConfig,
    WinBackConfig,
)

# -- send decisions: status, and why not -------------------------------------------------

# "uncertain": the final dot was written and no reply was recorded; the relay may have the
# message (docs/decisions/0002-send-idempotency.md). Not sent again unless the journey says so.
SendStatus = Literal["sent", "skipped", "held_out", "bounced", "failed", "deferred", "uncertain"]

# Why a send did not go out (or not yet): a code from this closed set, plus a detail for
# people. Code decides, never the detail; describe() writes both for people.
ReasonCode = Literal[
    # the gate: this email must not go out
    "invalid_email",  # the address is no email address
    "unsubscribed",  # from marketing email (no detail) or from this journey (detail)
    "suppressed",  # the address is suppressed (detail: hard_bounce, complaint, sunset, ...)
    "cart_empty",  # the cart to remind of is gone
    "ordered",  # an order that counts since entering
    "capped",  # the frequency cap across journeys
    "holdout",  # the control group (status held_out)
    "step_holdout",  # the step's own control group: skips this email only (status held_out)
    "no_phone",  # a text, and the customer has no phone number
    "no_sms_consent",  # a text, and the customer never gave SMS consent (or withdrew it)
    # held: the same send is tried again later (status deferred)
    "quiet_hours",
    "paused",  # an operator paused the journey
    # the SMTP server's answer
    "hard_bounce",  # the mailbox does not exist (status bounced)
    "rejected",  # the message was refused for good (status failed)
    "uncertain",  # the dot went out and no reply was recorded (status uncertain)
    "gave_up",  # the send was retried until its time ran out (status failed; detail: why)
    # the journey's own decisions
    "left",  # the journey ended while the send was held
    "clicked",  # cart recovery: they clicked already, no more plain reminders
    "first_week_limit",  # nurture: enough emails in the first week
    # the lifecycle (journeys/lifecycle.toml): the stage's care or marketing emails are spent
    "touch_budget",
]
REASON_CODES: frozenset[str] = frozenset(get_args(ReasonCode))

# Codes of a skip that mean the customer has left the journey for good ("ordered" only
# where the step says on_order = "exit").
EXIT_CODES: frozenset[ReasonCode] = frozenset(
    {"ordered", "cart_empty", "suppressed", "unsubscribed"}
)


def describe(code: ReasonCode | None, detail: str | None) -> str | None:
    """What people read (explain, the send log, the state query): ``code: detail``."""
    if code is None:
        return detail
    return f"{code}: {detail}" if detail else code


# -- journeys: inputs, signals, state, results --------------------------------------------


class JourneyInput(BaseModel):
    customer_id: str
    config: JourneyConfig
    # The customer's lifecycle stage when the run was started (core.lifecycle.Lifecycle's
    # label): the run's LifecycleStage search attribute. None: not known to the starter.
    lifecycle_stage: str | None = None


class CustomerLeft(BaseModel):
    """Signal ``customer_left``: unsubscribed, complained or hard-bounced; leave now."""

    reason: str


class OrderSeen(BaseModel):
    """Signal ``order_placed``: the customer ordered (the store has the order)."""

    order_id: str
    skus: list[str] = []


class Engagement(BaseModel):
    """Signal ``engaged``: the customer opened or clicked one of our emails."""

    kind: str  # opened | clicked
    step: str | None = None
    url: str | None = None


class StepRecord(BaseModel):
    """One send decision of the run, as the ``state`` query and the result show it."""

    step: str
    status: str
    reason: str | None = None  # for people: the code and its detail (describe())
    at: datetime
    code: ReasonCode | None = None  # for code: why it was not sent (None: it was)


class JourneyState(BaseModel):
    """What the ``state`` query returns: where the run is and what it did."""

    journey: str
    customer_id: str
    entered_at: datetime
    step: str
    next_step: str | None = None
    next_at: datetime | None = None
    decisions: list[StepRecord] = []
    branches: dict[str, str] = {}
    engagements: list[Engagement] = []
    paused: str | None = None
    outcome: str | None = None


class JourneyResult(BaseModel):
    outcome: str
    sent: list[str]
    decisions: list[StepRecord]


class WelcomeInput(JourneyInput):
    config: WelcomeConfig


class NurtureInput(JourneyInput):
    config: NurtureConfig
    order_id: str  # the first order
    category: str | None = None  # its main product category (chooses the care content)


class BrowseInput(JourneyInput):
    config: BrowseConfig
    sku: str  # the product of interest


class WinBackInput(JourneyInput):
    config: WinBackConfig
    group: Literal["win_back", "repeat_purchase"]


class BirthdayInput(JourneyInput):
    config: BirthdayConfig
    year: int


class StimulationInput(JourneyInput):
    config: StimulationConfig
    order_id: str  # the first order (it does not end the journey)


class VipCareInput(JourneyInput):
    config: VipCareConfig
    year: int


class HolidayInput(JourneyInput):
    config: HolidayConfig
    holiday: str  # its name, as the greeting says it
    day: date  # the customer's local date of it


class ConfirmInput(JourneyInput):
    """The double opt-in's confirmation email (workflows/confirm_subscription.py): the
    signed link to confirm with, and the consent text it confirms."""

    confirm_url: str
    consent_text: str


class CartChange(BaseModel):
    """Signal ``cart_updated``: the cart changed; ``empty`` when it was emptied."""

    empty: bool = False


class ProductView(BaseModel):
    """Signal ``product_viewed``."""

    sku: str


class Shipment(BaseModel):
    """Signal ``order_shipped``."""

    order_id: str
    shipment_id: str
    tracking_url: str | None = None


# -- the daily sweep ------------------------------------------------------------------------

SWEEP_PHASES = ("win_back", "repeat_purchase", "birthday")


class PhaseCount(BaseModel):
    selected: int = 0
    started: int = 0
    pages: int = 0


class SweepInput(BaseModel):
    win_back: WinBackConfig
    birthday: BirthdayConfig
    as_of: datetime | None = None  # the sweep's "today"; default: when it starts
    phase: str = SWEEP_PHASES[0]
    # journeys/lifecycle.toml: the stages are brought up to date first (the LifecycleSweep
    # child, from the patch "daily-sweep-lifecycle-stages"); None: they are not. With them,
    # the child starts VIP care and holiday greetings (None: not).
    lifecycle: LifecycleConfig | None = None
    vip_care: VipCareConfig | None = None
    holidays: HolidayConfig | None = None
    after_id: str = ""
    counts: dict[str, PhaseCount] = {}


class SweepResult(BaseModel):
    as_of: datetime
    counts: dict[str, PhaseCount]


class LifecycleSweepInput(BaseModel):
    """The lifecycle part of the daily sweep (workflows/lifecycle_sweep.py): stages brought
    up to date, one keyset page at a time; continues as new every ``pages_per_run`` pages."""

    lifecycle: LifecycleConfig
    as_of: datetime
    page_size: int = 2000
    pages_per_run: int = 20
    phase: str = "stages"
    after_id: str = ""
    counts: dict[str, PhaseCount] = {}
    # The journeys it starts (patch "lifecycle-sweep-journeys"); None: that phase is left out.
    vip_care: VipCareConfig | None = None
    holidays: HolidayConfig | None = None


class LifecyclePageInput(BaseModel):
    phase: str  # stages | vip_care | holidays
    as_of: datetime
    after_id: str
    page_size: int
    lifecycle: LifecycleConfig
    vip_care: VipCareConfig | None = None
    holidays: HolidayConfig | None = None


# -- activities -----------------------------------------------------------------------------


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
    # Cadence (journeys/lifecycle.toml): the cap of a customer in a stage, in place of
    # ``frequency_cap``; a capped send is skipped, or held ("defer") until the cap allows
    # it, at most ``cap_wait`` after ``due_at`` (when the step was first asked).
    stage_caps: dict[str, FrequencyCap] = {}
    on_cap: Literal["skip", "defer"] = "skip"
    cap_wait: timedelta = timedelta(days=7)
    due_at: datetime | None = None
    # The touch budget of each stage, and which journeys' emails are care (the rest are
    # marketing): a send beyond the customer's stage's budget is held like a capped one.
    stage_budgets: dict[str, TouchBudget] = {}
    care_journeys: tuple[str, ...] = ()
    coupon: CouponConfig | None = None
    requires_active_cart: bool = False
    transactional: bool = False
    quiet_hours: QuietHours | None = None
    # email | sms (docs/decisions/0015-sms.md): a text is rendered from <template>.sms.j2
    # and gated by SMS consent and suppression instead of email's.
    channel: Literal["email", "sms"] = "email"
    # Which orders count as "ordered since entering": all but ``ignore_order_id`` (the order
    # that started the journey), and only those with one of ``order_skus`` when given.
    check_orders: bool = True
    ignore_order_id: str | None = None
    order_skus: list[str] | None = None
    # Extra data for the template: {"product_sku": ...} adds ``product`` and ``accessories``;
    # {"cross_sell_category": ...} adds ``cross_sell``; anything else is passed as it is.
    context: dict[str, Any] = {}
    # A send found uncertain (the dot went out, no reply recorded): leave it ("skip") or send
    # it again ("resend") once the attempt that wrote the dot is surely over (its lease).
    on_uncertain: Literal["skip", "resend"] = "skip"
    # The step's own holdout (skip this email, walk on) and its A/B test; ``variant`` is the
    # one chosen for this send (set by the send activity, recorded in the send log).
    step_holdout_share: float = 0.0
    variants: tuple[Variant, ...] = ()
    auto_winner: AutoWinner | None = None
    variant: str | None = None

    @property
    def idempotency_key(self) -> str:
        return send_key(self.workflow_id, self.run_chain_id, self.step)


class SendGaveUp(BaseModel):
    """A send whose retries ran out (the relay or the store was down too long): recorded as
    ``failed`` with why, so the journey goes on."""

    request: SendStepInput
    detail: str


class SendOutcome(BaseModel):
    status: SendStatus
    code: ReasonCode | None = None  # why it was not sent; None when it was
    detail: str | None = None  # for people: the cap, the zone, the SMTP reply, ...
    message_id: str | None = None
    already_done: bool = False  # True when a retry found the decision recorded before
    retry_at: datetime | None = None  # with "deferred": quiet hours end then

    @model_validator(mode="before")
    @classmethod
    def _legacy_reason(cls, data: Any) -> Any:
        """Legacy decoder, for activity results recorded in histories before codes existed
        (``{"status": "skipped", "reason": "suppressed: complaint"}``): the one place a
        reason text is read back into a code. Nothing writes that shape any more."""
        if isinstance(data, dict) and "reason" in data and "code" not in data:
            data = dict(data)
            data["code"], data["detail"] = _legacy_code(data.get("status"), data.pop("reason"))
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reason(self) -> str | None:
        """For people. Also in the payload: a worker of the version before codes reads it
        during a rolling deploy (decoding ignores it)."""
        return describe(self.code, self.detail)


def _legacy_code(status: object, reason: object) -> tuple[str | None, str | None]:
    if not isinstance(reason, str) or not reason:
        return None, None
    code, _, detail = reason.partition(": ")
    if code in REASON_CODES:
        return code, detail or None
    if reason.startswith("holdout group"):  # "holdout group (10% of cart_recovery)"
        return "holdout", reason.removeprefix("holdout group").strip(" ()") or None
    if reason.startswith("left "):  # "left while paused", "left while deferred"
        return "left", reason.removeprefix("left ")
    if status == "failed":  # the SMTP reply as it was
        return "rejected", reason
    return None, reason


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
    # A coupon this run gave was redeemed (its own customer's, in time: store.coupons).
    used_coupon: bool = False


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
    win_back: WinBackConfig
    birthday: BirthdayConfig


class SweepPageResult(BaseModel):
    selected: int
    started: int
    next_after: str | None  # None: this phase is done


class SunsetInput(BaseModel):
    customer_id: str
    reason: str


class EntryInput(BaseModel):
    """Activity ``record_entry``: a run entered its journey, in this group (the report's
    clock and group for every conversion)."""

    customer_id: str
    journey: str
    workflow_id: str
    run_chain_id: str
    entered_at: datetime
    group: Literal["treated", "control"]
    holdout_share: float
    journey_version: int
