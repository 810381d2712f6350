"""Pure rules of the send gate and the journeys: no I/O, no clock but the one passed in.

Each is a function of its arguments, so a table test covers it (tests/test_rules.py), and
workflows and activities share the same answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.contracts import EXIT_CODES, ReasonCode, SendOutcome, SendStepInput
from journeys.config import QuietHours, StepConfig, Variant

# Suppressions that stop even transactional mail: the address does not take mail, or its
# owner reported us.
UNDELIVERABLE = frozenset({"hard_bounce", "complaint"})
# Every suppression reason, strongest first: an address suppressed for several reasons shows
# (and is gated by) its strongest; lifting one leaves the others.
SUPPRESSION_PRECEDENCE = ("complaint", "hard_bounce", "soft_bounce_limit", "unsubscribed", "sunset")
# Suppressions an explicit re-subscribe lifts (never hard bounces or complaints).
LIFTED_BY_CONSENT = ("unsubscribed", "sunset")
# Suppressions a new order lifts: the customer is clearly engaged again.
LIFTED_BY_ORDER = ("sunset",)
# A send held by a paused journey is looked at again after this (or at once on resume).
PAUSE_RECHECK = timedelta(days=1)


def strongest_suppression(reasons: Iterable[str]) -> str | None:
    """The reason that decides for an address suppressed for ``reasons`` (None: for none);
    a reason not in SUPPRESSION_PRECEDENCE ranks after the known ones."""
    rank = {r: i for i, r in enumerate(SUPPRESSION_PRECEDENCE)}
    return min(reasons, key=lambda r: (rank.get(r, len(rank)), r), default=None)


def in_holdout(customer_id: str, journey: str, share: float) -> bool:
    """Deterministic: the same customer and journey always land in the same group; about
    ``share`` (0..1) of all customers are held out."""
    if share <= 0:
        return False
    digest = hashlib.sha256(f"{customer_id}:{journey}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def in_step_holdout(customer_id: str, journey: str, step: str, share: float) -> bool:
    """The step's own control group: ``in_holdout`` keyed by journey and step, so a customer
    skips the same step on every retry and replay, and not the same customers at each step."""
    return in_holdout(customer_id, f"{journey}/{step}", share)


def ab_variant(customer_id: str, journey: str, step: str, variants: Sequence[Variant]) -> str:
    """The variant of a step's A/B test this customer gets: a hash of (customer, journey,
    step) into [0, 1) cut by the variants' weights, so the same customer always gets the
    same one (retries, replays, reruns) and shares follow the weights. ``variants`` must not
    be empty."""
    if not variants:
        raise ValueError("ab_variant: no variants")
    digest = hashlib.sha256(f"ab:{customer_id}:{journey}/{step}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(v.weight for v in variants)
    for v in variants:
        point -= v.weight
        if point < 0:
            return v.name
    return variants[-1].name  # rounding at the very top


def zone(name: str | None) -> ZoneInfo:
    """The customer's zone; UTC for a missing or unknown name."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_until(now: datetime, zone_name: str | None, quiet: QuietHours) -> datetime | None:
    """When the quiet hours around ``now`` (aware) end in ``zone_name``, in UTC; None outside
    them. Local wall-clock times: across a DST change the end is the local ``quiet.end``."""
    if not quiet.enabled or quiet.start == quiet.end:
        return None
    tz = zone(zone_name)
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    overnight = quiet.start > quiet.end
    inside = (t >= quiet.start or t < quiet.end) if overnight else quiet.start <= t < quiet.end
    if not inside:
        return None
    day = local.date() if t < quiet.end else local.date() + timedelta(days=1)
    end = datetime(day.year, day.month, day.day, quiet.end.hour, quiet.end.minute, tzinfo=tz)
    return end.astimezone(UTC)


def counts_as_order(
    order_id: str,
    skus_bought: Iterable[str],
    *,
    ignore_order_id: str | None,
    skus: list[str] | None,
) -> bool:
    """The one rule for "has the customer ordered (what this journey waits for)": any order
    but ``ignore_order_id`` (the one that started the journey), and with ``skus`` only an
    order of one of them."""
    if ignore_order_id is not None and order_id == ignore_order_id:
        return False
    if skus:
        return bool(set(skus_bought) & set(skus))
    return True


def skus_of(lines: Mapping[str, Any]) -> list[str]:
    """The SKUs of an order's or a cart's stored lines (``{"items": [...]}``)."""
    return [str(line.get("sku")) for line in lines.get("items", [])]


def birthday_md(text: str) -> str | None:
    """ "1990-05-17", "05-17" or "--05-17" -> "05-17"; None when it is no date. 29 February
    is a birthday (checked against a leap year)."""
    parts = text.strip().lstrip("-").split("-")
    try:
        month, day = int(parts[-2]), int(parts[-1])
        date(2000, month, day)
    except (ValueError, IndexError):
        return None
    return f"{month:02d}-{day:02d}"


def main_category(categories: Iterable[str | None]) -> str | None:
    """The most frequent category of an order's lines (ties: the first seen)."""
    seen = [c for c in categories if c]
    return max(dict.fromkeys(seen), key=seen.count) if seen else None


# -- the send gate ----------------------------------------------------------------------

CartState = Literal["active", "ordered", "gone"]


def cart_state(status: str | None, lines: Mapping[str, Any] | None) -> CartState:
    """A stored cart (``None``: none) as the gate sees it: something to remind of, turned
    into an order, or gone (emptied, or never had lines)."""
    if status == "ordered":
        return "ordered"
    if status == "active" and lines and lines.get("items"):
        return "active"
    return "gone"


@dataclass(frozen=True)
class Touches:
    """The touch budget of the customer's lifecycle stage for this send's kind (care or
    marketing, journeys/lifecycle.toml), and the emails of that kind sent in the stage."""

    stage: str
    kind: Literal["care", "marketing"]
    budget: int
    sent: int

    @property
    def spent(self) -> bool:
        return self.sent >= self.budget


@dataclass(frozen=True)
class Recipient:
    """What the store says at the moment of a send: the facts the gate decides on."""

    email_problem: str | None  # why the address is no email address; None: it is one
    subscribed: bool
    unsubscribed_journeys: Collection[str]
    suppression: str | None  # the address's suppression reason, if any
    timezone: str | None
    cart: CartState = "gone"
    ordered: bool = False  # an order that counts (counts_as_order) since entering
    recent_sends: int = 0  # other journeys' emails within the frequency cap's window
    paused: str | None = None  # the journey is paused (the operator's reason, or "")
    # Texts (docs/decisions/0015-sms.md): the number in E.164, SMS consent, and the number's
    # SMS suppression (its strongest reason), all apart from email's.
    phone: str | None = None
    sms_consent: bool = False
    sms_suppression: str | None = None
    # The stage's touch budget for this email (None: no stage, no budget, or transactional).
    touches: Touches | None = None


def send_decision(req: SendStepInput, who: Recipient) -> SendOutcome | None:
    """The gate (docs/architecture.md decision 5): why this email must not go out (skipped,
    held_out), or not yet (deferred: paused journey, quiet hours); None: send it."""
    refusal = _refusal(req, who)
    if refusal is not None:
        return refusal
    if who.paused is not None:
        # Held until an operator resumes the journey (the resume signal wakes the run;
        # the daily re-check is a safety net).
        return SendOutcome(
            status="deferred",
            code="paused",
            detail=f"journey {req.journey} ({who.paused or 'operator'})",
            retry_at=req.now + PAUSE_RECHECK,
        )
    if req.quiet_hours is not None:
        until = quiet_until(req.now, who.timezone, req.quiet_hours)
        if until is not None:
            return SendOutcome(
                status="deferred",
                code="quiet_hours",
                detail=f"{who.timezone} until {until:%Y-%m-%d %H:%M} UTC",
                retry_at=until,
            )
    return None


def _skip(code: ReasonCode, detail: str | None = None) -> SendOutcome:
    return SendOutcome(status="skipped", code=code, detail=detail)


def _refusal(req: SendStepInput, who: Recipient) -> SendOutcome | None:
    if req.channel == "sms":
        return _sms_refusal(req, who)
    if who.email_problem is not None:
        return _skip("invalid_email", who.email_problem)
    if req.transactional:
        # A shipping notice still goes to unsubscribed and sunset addresses, past the cap
        # and the holdout; never to one that does not take mail or reported us.
        if who.suppression in UNDELIVERABLE:
            return _skip("suppressed", who.suppression)
        return _unmet(req, who)
    if not who.subscribed:
        return _skip("unsubscribed")
    if req.journey in who.unsubscribed_journeys:
        return _skip("unsubscribed", f"from {req.journey}")
    if who.suppression is not None:
        return _skip("suppressed", who.suppression)
    if (unmet := _unmet(req, who)) is not None:
        return unmet
    cap = req.frequency_cap
    if who.recent_sends >= cap.max_emails:
        return _skip("capped", f"{who.recent_sends} emails from other journeys within {cap.window}")
    if who.touches is not None and who.touches.spent:
        t = who.touches
        return _skip("touch_budget", f"{t.kind} {t.sent} of {t.budget} sent in stage {t.stage}")
    if in_holdout(req.customer_id, req.journey, req.holdout_share):
        detail = f"{req.holdout_share:.0%} of {req.journey}"
        return SendOutcome(status="held_out", code="holdout", detail=detail)
    share = req.step_holdout_share
    if in_step_holdout(req.customer_id, req.journey, req.step, share):
        detail = f"{share:.0%} of step {req.step}"
        return SendOutcome(status="held_out", code="step_holdout", detail=detail)
    return None


def _sms_refusal(req: SendStepInput, who: Recipient) -> SendOutcome | None:
    """A text: a number, SMS consent and no SMS suppression, whatever email's state (an
    email unsubscribe stops no text; a STOP stops every text, transactional ones too: after
    STOP a number may only get the reply confirming it, CTIA). Then what email has: the
    journey's own conditions, the cap (counted as recent_sends says), the holdout."""
    if who.phone is None:
        return _skip("no_phone")
    if who.sms_suppression is not None:
        return _skip("suppressed", f"sms: {who.sms_suppression}")
    if not who.sms_consent:
        return _skip("no_sms_consent")
    if (unmet := _unmet(req, who)) is not None:
        return unmet
    if req.transactional:
        return None
    cap = req.frequency_cap
    if who.recent_sends >= cap.max_emails:
        counted = "texts" if cap.per_channel else "emails and texts"
        detail = f"{who.recent_sends} {counted} from other journeys within {cap.window}"
        return _skip("capped", detail)
    if in_holdout(req.customer_id, req.journey, req.holdout_share):
        detail = f"{req.holdout_share:.0%} of {req.journey}"
        return SendOutcome(status="held_out", code="holdout", detail=detail)
    return None


def _unmet(req: SendStepInput, who: Recipient) -> SendOutcome | None:
    """The journey's own conditions: a cart to remind of, no order since entering."""
    if req.requires_active_cart and who.cart != "active":
        return _skip("ordered" if who.cart == "ordered" else "cart_empty")
    if req.check_orders and who.ordered:
        return _skip("ordered")
    return None


def ends_journey(outcome: SendOutcome, step: StepConfig) -> bool:
    """Does this send decision end the journey? A bounce does; so does a skip for good
    (EXIT_CODES), an order only where the step says ``on_order = "exit"``."""
    if outcome.status == "bounced":
        return True
    if outcome.status != "skipped":
        return False
    if outcome.code == "ordered":
        return step.on_order == "exit"
    # A text refused (no consent, STOP, a dead number) leaves the emails to come.
    return step.channel == "email" and outcome.code in EXIT_CODES
