"""Journey configuration as validated data.

The starter loads ``journeys/<name>.toml`` into :class:`JourneyConfig` and passes it to the
workflow as input (README, "How it works"): editing a TOML changes new runs only.
This module is imported by workflow code, so it must stay deterministic: no I/O at import.

Longer than the ~400-line guide (docs/architecture.md, Layout), on purpose: it is the schema of a
journey TOML, one tree (the shared parts, the loader that names a bad key, then each journey's
own section from ``_NamedSteps`` down). A new key is one field and its check in one file.
"""

from __future__ import annotations

import re
import tomllib
from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, overload

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_duration(value: Any) -> Any:
    """Accept "90s", "15m", "1h", "2d", "1w" besides what pydantic takes (ISO 8601, seconds)."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CouponConfig(_Strict):
    prefix: str = Field("SAVE", pattern=r"^[A-Z0-9]{2,12}$")
    percent_off: int = Field(ge=1, le=100)
    valid_for: Duration = timedelta(days=7)


class Variant(_Strict):
    """One arm of a step's A/B test: its subject (and maybe its template), and its share of
    the customers relative to the other variants' weights."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    subject: str
    template: str | None = None  # None: the step's template
    weight: float = Field(1.0, gt=0)


class AutoWinner(_Strict):
    """Stop the test once it is decided: when every variant has at least
    ``min_sends_per_variant`` sends and the chi-squared test of ``metric`` (unique human
    opens or clicks per send) gives p < ``alpha``, every later send gets the variant with the
    best rate (recorded in ``ab_winners``)."""

    min_sends_per_variant: int = Field(500, ge=1)
    alpha: float = Field(0.05, gt=0, lt=1)
    metric: Literal["opens", "clicks"] = "opens"


class StepConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    after: Duration
    template: str
    subject: str
    coupon: CouponConfig | None = None
    # A share of the customers who skip just this email and walk on to the next step (the
    # step's own control group: what this one message adds), decided per customer and step
    # (core.rules.in_step_holdout); on top of the journey's holdout_share.
    holdout_share: float = Field(0.0, ge=0.0, le=1.0)
    # An A/B test of this step: each customer gets one variant, by weight, the same on every
    # retry and replay (core.rules.ab_variant). Empty: no test.
    variants: tuple[Variant, ...] = ()
    auto_winner: AutoWinner | None = None
    # When the customer has ordered since entering the journey: leave the journey ("exit"),
    # skip just this email ("skip"), or send it anyway ("send").
    on_order: Literal["exit", "skip", "send"] = "exit"
    # When the frequency cap holds this email back: drop it ("skip"), or hold it until the
    # cap allows it ("defer", like quiet hours: the run waits and still leaves at once on an
    # order or an unsubscribe), at most ``cap_wait`` after it was due; longer: skipped.
    on_cap: Literal["skip", "defer"] = "skip"
    cap_wait: Duration = timedelta(days=7)
    # Transactional mail (a shipping notice): it still goes to unsubscribed and sunset
    # addresses, past quiet hours, the frequency cap and the holdout; never to an address
    # that hard-bounced or complained.
    transactional: bool = False
    # The channel (docs/decisions/0015-sms.md): "sms" sends a text rendered from
    # <template>.sms.j2 (``subject`` unused) through the same gate. ``along_with`` names the
    # email step a text goes out right after (any journey can add texts without code).
    channel: Literal["email", "sms"] = "email"
    along_with: str | None = None

    @model_validator(mode="after")
    def _variants_are_a_test(self) -> StepConfig:
        names = [v.name for v in self.variants]
        if len(names) == 1:
            raise ValueError("variants: an A/B test needs at least two variants")
        if len(set(names)) != len(names):
            raise ValueError(f"variants: names must be unique, got {names}")
        if self.auto_winner is not None and not self.variants:
            raise ValueError("auto_winner: the step has no variants to pick from")
        return self


class QuietHours(_Strict):
    """No marketing email between ``start`` and ``end`` in the customer's time zone; a send
    due then moves to ``end`` (the next allowed minute)."""

    enabled: bool = True
    start: time = time(21, 0)
    end: time = time(8, 0)


class FrequencyCap(_Strict):
    """A send goes out only while fewer than ``max_emails`` emails from *other* journeys'
    runs went out within ``window`` (1 = "nothing else in the window")."""

    window: Duration = timedelta(days=1)
    max_emails: int = Field(2, ge=1)
    # False: emails and texts count together against ``max_emails``; True: each channel
    # counts only its own messages.
    per_channel: bool = False


class TouchBudget(_Strict):
    """Emails a customer may get while in a lifecycle stage (journeys/lifecycle.toml
    [budget.<stage>]): care (service, tips; ``care_journeys``) and marketing (offers). The
    gate holds a send beyond it like a capped one; transactional mail is never held."""

    care: int = Field(ge=0)
    marketing: int = Field(ge=0)


class EntryRule(_Strict):
    """Who may enter the journey again (core.starting.entry_refusal): ``once_ever``; after a
    ``cooldown`` since the last entry; at most ``max_per_year`` entries in 365 days; or
    ``one_live`` (again as soon as the last run has ended). A journey without ``[entry]``
    keeps the rule of its code (core.starting.ENTRIES)."""

    rule: Literal["once_ever", "cooldown", "per_year", "one_live"]
    cooldown: Duration | None = None
    max_per_year: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _has_its_number(self) -> EntryRule:
        if self.rule == "cooldown" and self.cooldown is None:
            raise ValueError('rule = "cooldown" needs cooldown (e.g. "30d")')
        if self.rule == "per_year" and self.max_per_year is None:
            raise ValueError('rule = "per_year" needs max_per_year')
        return self


# The journeys whose run can be built from a stage change alone (core/stage_starts.py has a
# builder for each; a test holds the two together): ``[start_on]`` elsewhere is refused.
STARTS_ON_STAGE_CHANGE = frozenset({"vip_care"})


class StageTrigger(_Strict):
    """``[start_on]``: the journey also starts on the event "Lifecycle Stage Changed" when
    the customer moves to a stage in ``to`` (``"vip"``: becomes a VIP), and only from one in
    ``from`` when that is given (core/stage_starts.py builds the run)."""

    event: Literal["Lifecycle Stage Changed"] = "Lifecycle Stage Changed"
    to: tuple[str, ...] = Field(min_length=1)
    # "from" in the TOML; "from_" as the workflow's input carries it.
    from_: tuple[str, ...] = Field((), validation_alias=AliasChoices("from", "from_"))

    def matches(self, *, previous: str | None, stage: str, became_vip: bool) -> bool:
        moved = stage != previous and stage in self.to
        if not (moved or (became_vip and "vip" in self.to)):
            return False
        return not self.from_ or (previous or "") in self.from_


class SendRetry(_Strict):
    """Retry policy of the send activity (SMTP 4xx, connection refused, timeouts)."""

    initial_interval: Duration = timedelta(seconds=30)
    maximum_interval: Duration = timedelta(minutes=30)
    backoff: float = Field(2.0, ge=1.0)
    give_up_after: Duration = timedelta(days=1)


class JourneyConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    version: int = Field(ge=1)
    description: str = ""
    holdout_share: float = Field(0.0, ge=0.0, le=1.0)
    frequency_cap: FrequencyCap = FrequencyCap()
    # The cap of a customer in a lifecycle stage, in place of ``frequency_cap``: filled from
    # journeys/lifecycle.toml [cadence] by the loader (journeys/loader.py), not in a journey.
    stage_caps: dict[str, FrequencyCap] = {}
    # The touch budget of each stage and the journeys whose emails are care touches (the
    # rest are marketing): journeys/lifecycle.toml [budget], care_journeys, by the loader.
    stage_budgets: dict[str, TouchBudget] = {}
    care_journeys: tuple[str, ...] = ()
    quiet_hours: QuietHours = QuietHours()
    # Texts wake people: stricter by default, and transactional texts keep them too.
    sms_quiet_hours: QuietHours = QuietHours(start=time(20, 0), end=time(9, 0))
    send_retry: SendRetry = SendRetry()
    # A send whose final dot went out without a recorded reply may have arrived: "skip" (the
    # default) leaves it at that, "resend" sends it again (maybe twice, same Message-ID).
    on_uncertain: Literal["skip", "resend"] = "skip"
    # Who may enter again ([entry] in the TOML); None: the rule of the journey's code.
    entry: EntryRule | None = None
    # Starts on a lifecycle stage change too ([start_on]; None: only as its code starts it).
    start_on: StageTrigger | None = None
    # Cart recovery: once the customer clicked a link in one of its emails, skip the plain
    # reminders still due (the discount still comes). Off: they are reminded until they buy.
    skip_reminders_after_click: bool = False
    steps: tuple[StepConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _steps_are_ordered_and_unique(self) -> JourneyConfig:
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"step names must be unique, got {names}")
        afters = [s.after for s in self.steps]
        if afters != sorted(afters):
            raise ValueError("steps must be listed in the order of their 'after' delay")
        return self

    @model_validator(mode="after")
    def _texts_go_along_email_steps(self) -> JourneyConfig:
        emails = {s.name for s in self.steps if s.channel == "email"}
        for s in self.steps:
            if s.along_with is not None and s.along_with not in emails:
                raise ValueError(
                    f"step {s.name!r}: along_with = {s.along_with!r} names no email step"
                )
            if s.along_with is not None and s.channel != "sms":
                raise ValueError(f"step {s.name!r}: only a text (channel = 'sms') goes along")
        return self

    def texts_along(self, step: str) -> list[StepConfig]:
        """The texts that go out right after the email step ``step``, in TOML order."""
        return [s for s in self.steps if s.along_with == step and s.channel == "sms"]

    def extra_templates(self) -> list[tuple[str, str]]:
        """Templates named outside ``steps`` (subclasses), as (key, template) pairs."""
        return []

    def step(self, name: str) -> StepConfig:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"journey {self.name!r} has no step {name!r}")

    def sped_up(self, factor: float) -> JourneyConfig:
        """Every delay divided by ``factor`` (JOURNEY_SPEEDUP; demos and tests only)."""
        if factor == 1:
            return self
        if factor <= 0:
            raise ValueError("speedup factor must be positive")
        delays = {
            name: value / factor
            for name, value in self
            if isinstance(value, timedelta)  # journey-specific waits of subclasses
        }
        return self.model_copy(
            update={
                **delays,
                "steps": tuple(
                    s.model_copy(
                        update={"after": s.after / factor, "cap_wait": s.cap_wait / factor}
                    )
                    for s in self.steps
                ),
                "frequency_cap": self.frequency_cap.model_copy(
                    update={"window": self.frequency_cap.window / factor}
                ),
                # The caps by lifecycle stage are caps like the journey's own.
                "stage_caps": {
                    stage: cap.model_copy(update={"window": cap.window / factor})
                    for stage, cap in self.stage_caps.items()
                },
            }
        )


# TOMLs in the journeys directory that are no journey: the lifecycle's thresholds
# (journeys/lifecycle.toml, core/lifecycle.py).
NOT_JOURNEYS = frozenset({"lifecycle"})


class JourneyConfigError(ValueError):
    """A journey TOML that cannot be used; the message names file, key and reason."""


Config = TypeVar("Config", bound=JourneyConfig)


@overload
def load_journey(name: str, journeys_dir: Path) -> JourneyConfig: ...


@overload
def load_journey(name: str, journeys_dir: Path, model: type[Config]) -> Config: ...


def load_journey(
    name: str, journeys_dir: Path, model: type[JourneyConfig] = JourneyConfig
) -> JourneyConfig:
    """Load and validate ``<journeys_dir>/<name>.toml`` into ``model``; templates must exist."""
    path = journeys_dir / f"{name}.toml"
    if not path.is_file():
        raise JourneyConfigError(f"{path}: no such journey file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise JourneyConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        config = model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise JourneyConfigError(f"{path}: {problems}") from exc
    if config.name != name:
        raise JourneyConfigError(f"{path}: name = {config.name!r} but the file is {name!r}")
    if config.start_on is not None and name not in STARTS_ON_STAGE_CHANGE:
        raise JourneyConfigError(
            f"{path}: start_on: {name} cannot start on a stage change (journeys that can: "
            f"{', '.join(sorted(STARTS_ON_STAGE_CHANGE))}; core/stage_starts.py builds their runs)"
        )
    templates = journeys_dir / "templates"
    named = [
        (f"steps.{i}.template", s.template)
        for i, s in enumerate(config.steps)
        if s.channel == "email"
    ]
    for i, s in enumerate(config.steps):
        if s.channel == "sms" and not (templates / f"{s.template}.sms.j2").is_file():
            raise JourneyConfigError(
                f"{path}: steps.{i}.template: template {s.template}.sms.j2 not found in {templates}"
            )
    named += [(key, template) for key, template in config.extra_templates()]
    named += [
        (f"steps.{i}.variants.{j}.template", v.template)
        for i, s in enumerate(config.steps)
        for j, v in enumerate(s.variants)
        if v.template is not None
    ]
    for key, template in named:
        for suffix in ("html", "txt"):
            if not (templates / f"{template}.{suffix}.j2").is_file():
                raise JourneyConfigError(
                    f"{path}: {key}: template {template}.{suffix}.j2 not found in {templates}"
                )
    return config


class _NamedSteps(JourneyConfig):
    """A journey whose workflow refers to its steps by name: they must all be there."""

    REQUIRED_STEPS: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _has_required_steps(self) -> _NamedSteps:
        missing = [n for n in self.REQUIRED_STEPS if n not in {s.name for s in self.steps}]
        if missing:
            raise ValueError(f"steps named {missing} are missing (the workflow uses them)")
        return self


class WelcomeConfig(_NamedSteps):
    REQUIRED_STEPS = ("welcome", "need_help", "feedback", "thank_you", "gift_offer", "preferences")


class NurtureConfig(_NamedSteps):
    REQUIRED_STEPS = (
        "thanks",
        "shipping",
        "care",
        "review",
        "one_month_gift",
        "repurchase",
        "offer",
    )
    # At most this many emails within `first_week` of the first order, whatever happens.
    first_week_max: int = Field(3, ge=0)
    first_week: Duration = timedelta(days=7)
    # Care content by the order's product category; "default" for the rest.
    care_templates: dict[str, str] = Field(default_factory=lambda: {"default": "care_default"})

    @model_validator(mode="after")
    def _has_default_care(self) -> NurtureConfig:
        if "default" not in self.care_templates:
            raise ValueError("care_templates needs a 'default' template")
        return self

    def care_template(self, category: str | None) -> str:
        return self.care_templates.get(category or "", self.care_templates["default"])

    def extra_templates(self) -> list[tuple[str, str]]:
        return [(f"care_templates.{k}", v) for k, v in self.care_templates.items()]


class BrowseConfig(_NamedSteps):
    REQUIRED_STEPS = ("reviews", "recommendation", "coupon")
    # Views of one product (or of one category) that make "interest".
    min_views: int = Field(2, ge=1)
    # The follow-up starts once the customer has not come back for this long.
    away_for: Duration = timedelta(days=7)


class SweepSelection(_Strict):
    """Who the daily sweep picks (never shortened by JOURNEY_SPEEDUP: it is about real
    customers' histories, not the journey's own waits)."""

    # repeat customers (orders > 1) with no order for this long: the win-back group
    repeat_lapsed_after: Duration = timedelta(days=90)
    # one-time buyers (orders = 1) with no order for this long: the repeat-purchase group
    single_lapsed_after: Duration = timedelta(days=180)
    # and only if no automation email reached them within this
    no_email_within: Duration = timedelta(days=7)
    # optional extra filters, no code needed
    min_average_order_value: Decimal | None = None
    never_bought_skus: tuple[str, ...] = ()


class SweepSchedule(_Strict):
    """When the daily sweep runs (a Temporal Schedule; local time of ``time_zone``)."""

    run_at: time = time(10, 0)
    time_zone: str = "UTC"
    page_size: int = Field(500, ge=1, le=10_000)
    pages_per_run: int = Field(20, ge=1)  # then continue-as-new: the history stays small


class WinBackConfig(_NamedSteps):
    REQUIRED_STEPS = ("win_back_offer", "repurchase_offer", "last_call")
    selection: SweepSelection = SweepSelection()
    sweep: SweepSchedule = SweepSchedule()
    # After the last call: no open, click or order within this -> the address is sunset.
    sunset_after: Duration = timedelta(days=15)


class BirthdayConfig(_NamedSteps):
    REQUIRED_STEPS = ("greeting",)


LIFECYCLE_STAGES = ("prospect", "new", "active", "repurchase_window", "silent", "sleeping", "lost")


class StimulationConfig(JourneyConfig):
    """Repeated stimulation (journeys/stimulation.toml): a first order of at least
    ``min_first_order`` starts it; each step is a round (thanks + a coupon), ordinary steps,
    as many as the TOML lists; each round is evaluated ``evaluation_window`` after it went
    out (the effect report's figure for that window, per step)."""

    min_first_order: Decimal = Field(Decimal("50"), ge=0)
    evaluation_window: Duration = timedelta(days=10)


class VipCareConfig(_NamedSteps):
    """VIP care (journeys/vip_care.toml): started by the daily sweep once a year for each
    VIP (journeys/lifecycle.toml [vip])."""

    REQUIRED_STEPS = ("welcome", "tips", "early_access")


class ShopDate(_Strict):
    """A day of the shop's own (an anniversary, a sale day), every year."""

    name: str = Field(min_length=1, max_length=60)
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)


class LunarDate(_Strict):
    """A day of the Chinese lunisolar calendar, every year on the Gregorian date it falls
    on that year (the Double Ninth: month 9, day 9), reckoned by the ``lunardate``
    package (1900-2099). A leap month's day does not count."""

    name: str = Field(min_length=1, max_length=60)
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=30)


class HolidayConfig(_NamedSteps):
    """Holiday greetings (journeys/holidays.toml): on a public holiday of ``country`` (the
    ``holidays`` package; only those named in ``public_holidays`` when given), a
    ``shop_dates`` day or a ``lunar_dates`` day, in the customer's local date, to customers
    in ``stages``; once per holiday and year."""

    REQUIRED_STEPS = ("greeting",)
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    public_holidays: tuple[str, ...] = ()
    shop_dates: tuple[ShopDate, ...] = ()
    lunar_dates: tuple[LunarDate, ...] = ()
    stages: tuple[str, ...] = ("new", "active", "repurchase_window", "silent", "sleeping")

    @model_validator(mode="after")
    def _known_stages(self) -> HolidayConfig:
        unknown = [s for s in self.stages if s not in LIFECYCLE_STAGES]
        if unknown:
            raise ValueError(f"stages: unknown {unknown}; stages are {list(LIFECYCLE_STAGES)}")
        return self
