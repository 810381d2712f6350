"""Where a customer is in their life with the shop: the lifecycle stage, a pure function of
their orders, spend and engagement with the thresholds of ``journeys/lifecycle.toml``
(docs/architecture.md decision 15, "Lifecycle is data").

Stages, by the time since the last order (first-time buyers start as ``new``):

    prospect           never bought (``lost`` after ``prospect_lost_after`` with no open or click)
    new                a first order, less than ``new_until`` (7 days) ago
    active             the last order less than ``active_until`` (45 days) ago
    repurchase_window  ... less than ``repurchase_until`` (90 days) ago
    silent             ... less than ``silent_until`` (140 days) ago
    sleeping           ... less than ``sleeping_until`` (365 days) ago
    lost               longer ago

Each bound is exclusive: an order exactly 7 days ago is ``active``, exactly 365 days ago
``lost``. Besides the stage: ``vip`` (lifetime spend >= ``vip.min_spend`` or orders >=
``vip.min_orders``) and ``repeat_buyer`` (two orders or more). Each stage has a touch budget
(care and marketing emails in the stage, held by the send gate) and may have its own
frequency cap (``cadence``).
The store applies the same thresholds set-based in SQL (store/lifecycle.py); the table
tests of tests/test_lifecycle_stages.py hold both to this function.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from journeys.config import Duration, FrequencyCap, JourneyConfigError, TouchBudget

Stage = Literal["prospect", "new", "active", "repurchase_window", "silent", "sleeping", "lost"]
STAGES: tuple[Stage, ...] = get_args(Stage)
# Stages of a buyer, in the order time moves them (the bound of each is in StageBounds).
BUYER_STAGES: tuple[Stage, ...] = ("new", "active", "repurchase_window", "silent", "sleeping")

LIFECYCLE_FILE = "lifecycle.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageBounds(_Strict):
    """Time since the last order at which each stage ends (exclusive upper bounds)."""

    new_until: Duration = timedelta(days=7)
    active_until: Duration = timedelta(days=45)
    repurchase_until: Duration = timedelta(days=90)
    silent_until: Duration = timedelta(days=140)
    sleeping_until: Duration = timedelta(days=365)
    # A prospect (no order) with no order and no open or click for this long: lost.
    prospect_lost_after: Duration = timedelta(days=365)

    @model_validator(mode="after")
    def _increasing(self) -> StageBounds:
        bounds = [self.new_until, self.active_until, self.repurchase_until]
        bounds += [self.silent_until, self.sleeping_until]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError(
                "new_until < active_until < repurchase_until < silent_until < sleeping_until"
            )
        return self

    def until(self, stage: Stage) -> timedelta:
        """When ``stage`` (a buyer's) ends, counted from the last order."""
        return {
            "new": self.new_until,
            "active": self.active_until,
            "repurchase_window": self.repurchase_until,
            "silent": self.silent_until,
            "sleeping": self.sleeping_until,
        }[stage]


class VipRule(_Strict):
    """VIP: lifetime spend of at least ``min_spend`` or at least ``min_orders`` orders
    (either may be left out; both out: nobody is VIP)."""

    min_spend: Decimal | None = Field(Decimal("500"), ge=0)
    min_orders: int | None = Field(5, ge=1)


# The playbook's numbers, as journeys/lifecycle.toml ships them.
PLAYBOOK_BUDGET: dict[Stage, TouchBudget] = {
    "prospect": TouchBudget(care=6, marketing=4),
    "new": TouchBudget(care=7, marketing=2),
    "active": TouchBudget(care=4, marketing=4),
    "repurchase_window": TouchBudget(care=2, marketing=2),
    "silent": TouchBudget(care=2, marketing=2),
    "sleeping": TouchBudget(care=2, marketing=2),
    "lost": TouchBudget(care=1, marketing=1),
}
PLAYBOOK_CADENCE: dict[Stage, FrequencyCap] = {
    "sleeping": FrequencyCap(window=timedelta(days=30), max_emails=1),
    "lost": FrequencyCap(window=timedelta(days=30), max_emails=1),
}


class LifecycleConfig(_Strict):
    """``journeys/lifecycle.toml``."""

    stages: StageBounds = StageBounds()
    vip: VipRule = VipRule()
    budget: dict[Stage, TouchBudget] = Field(default_factory=lambda: dict(PLAYBOOK_BUDGET))
    # Journeys whose emails count as care touches (the rest are marketing).
    care_journeys: tuple[str, ...] = (
        "welcome_series",
        "new_customer_nurture",
        "vip_care",
        "birthday",
    )
    # The frequency cap of a customer in this stage, in place of the journey's own
    # ([frequency_cap] of its TOML); a stage not listed keeps the journey's.
    cadence: dict[Stage, FrequencyCap] = Field(default_factory=lambda: dict(PLAYBOOK_CADENCE))

    def cap_for(self, stage: str | None, journey_cap: FrequencyCap) -> FrequencyCap:
        """The frequency cap that holds for a customer in ``stage``."""
        return self.cadence.get(stage, journey_cap) if stage in STAGES else journey_cap


def load_lifecycle(journeys_dir: Path) -> LifecycleConfig:
    """``<journeys_dir>/lifecycle.toml`` validated; defaults when the file is absent.
    Raises ``JourneyConfigError`` naming the file, key and reason."""
    path = journeys_dir / LIFECYCLE_FILE
    if not path.is_file():
        return LifecycleConfig()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise JourneyConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return LifecycleConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise JourneyConfigError(f"{path}: {problems}") from exc


@dataclass(frozen=True)
class CustomerFacts:
    """What the stage is computed from (all times aware)."""

    signed_up_at: datetime
    order_count: int = 0
    last_order_at: datetime | None = None
    spend: Decimal = Decimal(0)  # lifetime order totals
    last_engaged_at: datetime | None = None  # last open or click


@dataclass(frozen=True)
class Lifecycle:
    stage: Stage
    vip: bool
    repeat_buyer: bool

    @property
    def label(self) -> str:
        return label(self.stage, vip=self.vip, repeat_buyer=self.repeat_buyer)


def label(stage: str, *, vip: bool, repeat_buyer: bool) -> str:
    """How a stage reads in ``explain`` and the ``LifecycleStage`` search attribute:
    ``active``, ``active, vip``, ``lost, repeat buyer``."""
    flags = ["vip"] if vip else ["repeat buyer"] if repeat_buyer else []
    return ", ".join([stage, *flags])


def stage_of(facts: CustomerFacts, now: datetime, config: LifecycleConfig) -> Stage:
    """The stage at ``now`` (see the module's table)."""
    bounds = config.stages
    if facts.order_count == 0 or facts.last_order_at is None:
        seen = max(facts.signed_up_at, facts.last_engaged_at or facts.signed_up_at)
        return "lost" if now - seen >= bounds.prospect_lost_after else "prospect"
    since = now - facts.last_order_at
    for stage in BUYER_STAGES:
        if stage == "new" and facts.order_count > 1:
            continue  # "new" is a first-time buyer's first days
        if since < bounds.until(stage):
            return stage
    return "lost"


def is_vip(facts: CustomerFacts, rule: VipRule) -> bool:
    by_spend = rule.min_spend is not None and facts.spend >= rule.min_spend
    by_orders = rule.min_orders is not None and facts.order_count >= rule.min_orders
    return by_spend or by_orders


def lifecycle_of(facts: CustomerFacts, now: datetime, config: LifecycleConfig) -> Lifecycle:
    """Stage and flags of a customer at ``now``."""
    return Lifecycle(
        stage=stage_of(facts, now, config),
        vip=is_vip(facts, config.vip),
        repeat_buyer=facts.order_count >= 2,
    )
