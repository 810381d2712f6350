"""The pure rules (core/rules.py, the duration syntax of journeys/config.py, the birthday
dates of the sweep) as tables: no server, no database."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from core.contracts import SendOutcome, SendStepInput
from core.rules import (
    Recipient,
    birthday_md,
    cart_state,
    counts_as_order,
    ends_journey,
    in_holdout,
    quiet_until,
    send_decision,
)
from journeys.config import Duration, FrequencyCap, QuietHours, StepConfig
from store.sweep import birthday_dates

NIGHT = QuietHours(start=time(21, 0), end=time(8, 0))
LUNCH = QuietHours(start=time(12, 0), end=time(14, 0))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- quiet hours ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "zone", "quiet", "ends"),
    [
        # Europe/Berlin in summer is UTC+2: 21:00-08:00 local is 19:00-06:00 UTC.
        ("2026-06-10 18:59", "Europe/Berlin", NIGHT, None),
        ("2026-06-10 19:00", "Europe/Berlin", NIGHT, "2026-06-11 06:00"),
        ("2026-06-10 21:30", "Europe/Berlin", NIGHT, "2026-06-11 06:00"),  # before midnight
        ("2026-06-10 22:30", "Europe/Berlin", NIGHT, "2026-06-11 06:00"),  # after midnight
        ("2026-06-11 05:59", "Europe/Berlin", NIGHT, "2026-06-11 06:00"),
        ("2026-06-11 06:00", "Europe/Berlin", NIGHT, None),
        # A window within one day.
        ("2026-06-10 09:59", "Europe/Berlin", LUNCH, None),
        ("2026-06-10 11:00", "Europe/Berlin", LUNCH, "2026-06-10 12:00"),
        ("2026-06-10 12:00", "Europe/Berlin", LUNCH, None),
        # Unknown or missing zone: UTC.
        ("2026-06-10 22:00", "Mars/Olympus", NIGHT, "2026-06-11 08:00"),
        ("2026-06-10 22:00", None, NIGHT, "2026-06-11 08:00"),
        # Berlin, spring forward (29 March 2026, 02:00 CET -> 03:00 CEST): the night began
        # at UTC+1 and ends at 08:00 UTC+2.
        ("2026-03-28 20:00", "Europe/Berlin", NIGHT, "2026-03-29 06:00"),
        ("2026-03-29 00:30", "Europe/Berlin", NIGHT, "2026-03-29 06:00"),  # 01:30 CET
        ("2026-03-29 01:30", "Europe/Berlin", NIGHT, "2026-03-29 06:00"),  # 03:30 CEST
        # Berlin, fall back (25 October 2026, 03:00 CEST -> 02:00 CET): ends 08:00 UTC+1.
        ("2026-10-24 19:00", "Europe/Berlin", NIGHT, "2026-10-25 07:00"),
        ("2026-10-25 00:30", "Europe/Berlin", NIGHT, "2026-10-25 07:00"),  # 02:30 CEST
        ("2026-10-25 01:30", "Europe/Berlin", NIGHT, "2026-10-25 07:00"),  # 02:30 CET
        ("2026-10-25 06:59", "Europe/Berlin", NIGHT, "2026-10-25 07:00"),
        ("2026-10-25 07:00", "Europe/Berlin", NIGHT, None),
        # New York, spring forward (8 March 2026, 02:00 EST -> 03:00 EDT): ends 12:00 UTC.
        ("2026-03-08 02:00", "America/New_York", NIGHT, "2026-03-08 12:00"),  # 21:00 EST
        ("2026-03-08 07:30", "America/New_York", NIGHT, "2026-03-08 12:00"),  # 03:30 EDT
        ("2026-03-08 11:59", "America/New_York", NIGHT, "2026-03-08 12:00"),
        ("2026-03-08 12:00", "America/New_York", NIGHT, None),
        # New York, fall back (1 November 2026, 02:00 EDT -> 01:00 EST): ends 13:00 UTC.
        ("2026-11-01 01:00", "America/New_York", NIGHT, "2026-11-01 13:00"),  # 21:00 EDT
        ("2026-11-01 05:30", "America/New_York", NIGHT, "2026-11-01 13:00"),  # 01:30 EDT
        ("2026-11-01 06:30", "America/New_York", NIGHT, "2026-11-01 13:00"),  # 01:30 EST
        ("2026-11-01 12:59", "America/New_York", NIGHT, "2026-11-01 13:00"),
        ("2026-11-01 13:00", "America/New_York", NIGHT, None),
    ],
)
def test_quiet_hours_end_at_the_local_end_time(
    now: str, zone: str | None, quiet: QuietHours, ends: str | None
) -> None:
    assert quiet_until(utc(now), zone, quiet) == (utc(ends) if ends else None)


@pytest.mark.parametrize(
    "quiet",
    [QuietHours(enabled=False), QuietHours(start=time(8, 0), end=time(8, 0))],
)
def test_disabled_or_empty_quiet_hours_never_hold_a_send(quiet: QuietHours) -> None:
    for hour in range(24):
        assert quiet_until(utc(f"2026-06-10 {hour:02d}:30"), "Europe/Berlin", quiet) is None


# -- holdout -------------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.05, 0.1, 0.5])
def test_holdout_holds_about_its_share_and_the_same_customers_every_time(share: float) -> None:
    ids = [f"c-{i}" for i in range(10_000)]

    held = {c for c in ids if in_holdout(c, "cart_recovery", share)}

    assert abs(len(held) / len(ids) - share) < 0.015
    assert held == {c for c in ids if in_holdout(c, "cart_recovery", share)}
    other = {c for c in ids if in_holdout(c, "win_back", share)}
    assert other != held  # each journey has its own control group


def test_no_share_holds_nobody_and_a_full_share_everybody() -> None:
    ids = [f"c-{i}" for i in range(1_000)]
    assert not any(in_holdout(c, "cart_recovery", 0.0) for c in ids)
    assert all(in_holdout(c, "cart_recovery", 1.0) for c in ids)


# -- durations -----------------------------------------------------------------------------

DURATION: TypeAdapter[timedelta] = TypeAdapter(Duration)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("1.5h", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        (" 2d ", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("P2D", timedelta(days=2)),
        ("PT1H30M", timedelta(minutes=90)),
        (3600, timedelta(hours=1)),
    ],
)
def test_durations_read_as_written(text: Any, parsed: timedelta) -> None:
    assert DURATION.validate_python(text) == parsed


@pytest.mark.parametrize("text", ["2x", "d2", "two days", "-"])
def test_a_duration_that_is_none_fails(text: str) -> None:
    with pytest.raises(ValidationError):
        DURATION.validate_python(text)


# -- birthdays -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "md"),
    [
        ("1990-05-17", "05-17"),
        ("05-17", "05-17"),
        ("--05-17", "05-17"),
        ("1992-02-29", "02-29"),
        ("--02-29", "02-29"),
        ("02-30", None),
        ("13-01", None),
        ("someday", None),
        ("", None),
    ],
)
def test_birthdays_are_read_to_month_and_day(text: str, md: str | None) -> None:
    assert birthday_md(text) == md


@pytest.mark.parametrize(
    ("as_of", "celebrated_on_the_28th"),
    [
        ("2027-02-28 12:00", ["02-28", "02-29"]),  # no 29th this year: celebrated on the 28th
        ("2028-02-28 12:00", ["02-28"]),  # a leap year: the 29th comes
        ("2100-02-28 12:00", ["02-28", "02-29"]),  # not a leap year (divisible by 100)
        ("2000-02-28 12:00", ["02-28"]),  # a leap year (divisible by 400)
    ],
)
def test_29_february_birthdays_are_celebrated_on_the_28th_without_a_29th(
    as_of: str, celebrated_on_the_28th: list[str]
) -> None:
    assert birthday_dates(utc(as_of))["02-28"] == celebrated_on_the_28th


def test_29_february_is_its_own_day_in_a_leap_year() -> None:
    assert birthday_dates(utc("2028-02-29 12:00"))["02-29"] == ["02-29"]


# -- orders --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order_id", "bought", "ignore", "skus", "counts"),
    [
        ("o-2", ["TEE-1"], None, None, True),  # any order
        ("o-1", ["TEE-1"], "o-1", None, False),  # the order that started the journey
        ("o-2", ["TEE-1"], "o-1", None, True),
        ("o-2", ["TEE-1", "CAP-1"], None, ["CAP-1"], True),  # one of the products
        ("o-2", ["TEE-1"], None, ["CAP-1"], False),  # another product
        ("o-2", [], None, ["CAP-1"], False),
        ("o-2", ["TEE-1"], None, [], True),  # no product named: any order
    ],
)
def test_what_counts_as_an_order(
    order_id: str, bought: list[str], ignore: str | None, skus: list[str] | None, counts: bool
) -> None:
    assert counts_as_order(order_id, bought, ignore_order_id=ignore, skus=skus) is counts


# -- the send gate -------------------------------------------------------------------------

NOW = utc("2026-06-10 10:00")  # noon in Berlin: outside the night


def request(**changes: Any) -> SendStepInput:
    base = SendStepInput(
        journey="cart_recovery",
        workflow_id="cart-recovery:c-1",
        run_chain_id="run-1",
        step="reminder_1",
        template="cart_reminder_1",
        subject="Your cart",
        customer_id="c-1",
        entered_at=NOW - timedelta(hours=1),
        now=NOW,
        frequency_cap=FrequencyCap(max_emails=2),
        quiet_hours=NIGHT,
    )
    return base.model_copy(update=changes)


def recipient(**changes: Any) -> Recipient:
    facts: dict[str, Any] = {
        "email_problem": None,
        "subscribed": True,
        "unsubscribed_journeys": [],
        "suppression": None,
        "timezone": "Europe/Berlin",
        "cart": "active",
        **changes,
    }
    return Recipient(**facts)


@pytest.mark.parametrize(
    ("req", "who", "decision"),
    [
        ({}, {}, None),
        ({}, {"email_problem": "no @"}, ("skipped", "invalid_email: no @")),
        ({}, {"subscribed": False}, ("skipped", "unsubscribed")),
        (
            {},
            {"unsubscribed_journeys": ["cart_recovery"]},
            ("skipped", "unsubscribed: from cart_recovery"),
        ),
        ({}, {"suppression": "complaint"}, ("skipped", "suppressed: complaint")),
        ({"requires_active_cart": True}, {"cart": "gone"}, ("skipped", "cart_empty")),
        ({"requires_active_cart": True}, {"cart": "ordered"}, ("skipped", "ordered")),
        ({}, {"ordered": True}, ("skipped", "ordered")),
        ({"check_orders": False}, {"ordered": True}, None),
        (
            {},
            {"recent_sends": 2},
            ("skipped", "capped: 2 emails from other journeys within 1 day, 0:00:00"),
        ),
        ({"holdout_share": 1.0}, {}, ("held_out", "holdout: 100% of cart_recovery")),
        ({}, {"paused": ""}, ("deferred", "paused: journey cart_recovery (operator)")),
        (
            {"now": utc("2026-06-10 20:00")},
            {},
            ("deferred", "quiet_hours: Europe/Berlin until 2026-06-11 06:00 UTC"),
        ),
        # Transactional mail: past unsubscribe, sunset, the cap, the holdout...
        ({"transactional": True}, {"subscribed": False, "suppression": "sunset"}, None),
        ({"transactional": True, "holdout_share": 1.0}, {"recent_sends": 9}, None),
        # ... never to an address that does not take mail or reported us.
        (
            {"transactional": True},
            {"suppression": "hard_bounce"},
            ("skipped", "suppressed: hard_bounce"),
        ),
        # A refusal comes before a hold: nothing waits that would not be sent.
        ({}, {"subscribed": False, "paused": "x"}, ("skipped", "unsubscribed")),
    ],
)
def test_the_gate_decides_with_a_code_and_a_detail(
    req: dict[str, Any], who: dict[str, Any], decision: tuple[str, str] | None
) -> None:
    outcome = send_decision(request(**req), recipient(**who))
    assert (None if outcome is None else (outcome.status, outcome.reason)) == decision


@pytest.mark.parametrize(
    ("status", "lines", "state"),
    [
        ("active", {"items": [{"sku": "TEE-1"}]}, "active"),
        ("active", {"items": []}, "gone"),
        ("emptied", {"items": [{"sku": "TEE-1"}]}, "gone"),
        ("ordered", {"items": [{"sku": "TEE-1"}]}, "ordered"),
        (None, None, "gone"),
    ],
)
def test_a_cart_is_something_to_remind_of_only_while_active_with_lines(
    status: str | None, lines: dict[str, Any] | None, state: str
) -> None:
    assert cart_state(status, lines) == state


def step(on_order: str) -> StepConfig:
    return StepConfig.model_validate(
        {"name": "s", "after": "1d", "template": "t", "subject": "s", "on_order": on_order}
    )


@pytest.mark.parametrize(
    ("outcome", "on_order", "ends"),
    [
        ({"status": "sent"}, "exit", False),
        ({"status": "bounced", "code": "hard_bounce"}, "exit", True),
        ({"status": "skipped", "code": "ordered"}, "exit", True),
        ({"status": "skipped", "code": "ordered"}, "skip", False),  # the step says so
        ({"status": "skipped", "code": "cart_empty"}, "exit", True),
        ({"status": "skipped", "code": "suppressed", "detail": "complaint"}, "skip", True),
        ({"status": "skipped", "code": "unsubscribed"}, "exit", True),
        ({"status": "skipped", "code": "capped"}, "exit", False),
        ({"status": "skipped", "code": "invalid_email"}, "exit", False),
        ({"status": "held_out", "code": "holdout"}, "exit", False),
        ({"status": "failed", "code": "rejected"}, "exit", False),
    ],
)
def test_which_send_decisions_end_the_journey(
    outcome: dict[str, Any], on_order: str, ends: bool
) -> None:
    assert ends_journey(SendOutcome.model_validate(outcome), step(on_order)) is ends


# -- decisions recorded before codes existed ------------------------------------------------


@pytest.mark.parametrize(
    ("recorded", "code", "detail"),
    [
        ({"status": "skipped", "reason": "suppressed: complaint"}, "suppressed", "complaint"),
        ({"status": "skipped", "reason": "ordered"}, "ordered", None),
        ({"status": "skipped", "reason": "unsubscribed: from x"}, "unsubscribed", "from x"),
        (
            {"status": "bounced", "reason": "hard_bounce: 550 5.1.1 No such user here"},
            "hard_bounce",
            "550 5.1.1 No such user here",
        ),
        (
            {"status": "deferred", "reason": "quiet_hours: Etc/GMT-3 until 2026-11-23 05:00 UTC"},
            "quiet_hours",
            "Etc/GMT-3 until 2026-11-23 05:00 UTC",
        ),
        (
            {"status": "held_out", "reason": "holdout group (10% of cart_recovery)"},
            "holdout",
            "10% of cart_recovery",
        ),
        ({"status": "failed", "reason": "554 5.7.1 rejected"}, "rejected", "554 5.7.1 rejected"),
        ({"status": "sent", "reason": None}, None, None),
    ],
)
def test_outcomes_recorded_as_a_reason_text_decode_to_a_code_and_a_detail(
    recorded: dict[str, Any], code: str | None, detail: str | None
) -> None:
    outcome = SendOutcome.model_validate(recorded)
    assert (outcome.code, outcome.detail) == (code, detail)
    assert SendOutcome.model_validate(outcome.model_dump()) == outcome


def test_birthday_dates_look_at_every_zone_of_the_moment() -> None:
    dates = birthday_dates(utc("2026-06-10 12:00"))
    assert dates == {"06-10": ["06-10"], "06-11": ["06-11"]}  # UTC-12 .. UTC+14
