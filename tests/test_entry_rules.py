"""Entry rules per journey ([entry] in its TOML): once ever, after a cooldown, at most N a
year; a refused entry is recorded with its reason and shown by explain."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from core.starting import entry_refusal
from journeys.config import EntryRule
from starter import ops
from store.models import JourneyEntry, SendLog
from testkit.data import add_customer, email_for
from testkit.mail import journey_mails, steps_of, wait_for_mail
from testkit.waiting import PATIENCE, eventually
from workflows.welcome_series import WelcomeSeries

NOW = datetime(2026, 6, 15, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("rule", "entered", "refused"),
    [
        (EntryRule(rule="once_ever"), [], None),
        (EntryRule(rule="once_ever"), [NOW - 900 * DAY], "once ever: entered 2023-12-28"),
        (EntryRule(rule="one_live"), [NOW - DAY], None),
        (EntryRule(rule="cooldown", cooldown=30 * DAY), [NOW - 29 * DAY], "again from 2026-06-16"),
        (EntryRule(rule="cooldown", cooldown=30 * DAY), [NOW - 30 * DAY], None),
        (EntryRule(rule="per_year", max_per_year=2), [NOW - 400 * DAY, NOW - 10 * DAY], None),
        (
            EntryRule(rule="per_year", max_per_year=2),
            [NOW - 300 * DAY, NOW - 10 * DAY],
            "at most 2 a year: entered 2 times",
        ),
    ],
)
def test_the_rules(rule: EntryRule, entered: list[datetime], refused: str | None) -> None:
    why = entry_refusal(rule, entered, NOW)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why


def test_a_rule_without_its_number_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="needs cooldown"):
        EntryRule(rule="cooldown")


pytestmark_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytestmark_sqlite
async def test_a_second_signup_inside_the_cooldown_is_refused_and_explained_one_after_it_is_not(
    make_stack,
):
    stack = await make_stack(welcome_series={"entry": {"rule": "cooldown", "cooldown": "30d"}})
    cid = stack.new_customer_id()
    await add_customer(stack, cid)

    first = await stack.journeys.signed_up({"customer_id": cid, "message_id": f"{cid}-1"})
    assert first.action == "started"
    await wait_for_mail(stack.catcher, email_for(cid), 1)  # the welcome: the run has entered
    handle = stack.client.get_workflow_handle_for(WelcomeSeries.run, str(first.workflow_id))
    await stack.fast_forward(handle, timedelta(days=13))  # the series ends
    await asyncio.wait_for(handle.result(), timeout=PATIENCE)

    second = await stack.journeys.signed_up({"customer_id": cid, "message_id": f"{cid}-2"})
    assert second.action == "already_welcomed"
    x = await ops.explain(stack.sessions, stack.client, cid)
    refused = [(b.journey, b.name, b.value) for b in x.branches if b.name == "entry"]
    assert refused == [("welcome_series", "entry", "refused")]
    reason = next(b.reason for b in x.branches if b.name == "entry") or ""
    assert reason.startswith("cooldown 30 days, 0:00:00: entered ")

    async with stack.sessions.begin() as s:  # a month goes by for the store
        a_month_ago = datetime.now(UTC) - timedelta(days=31)
        for table, column in (
            (JourneyEntry, JourneyEntry.entered_at),
            (SendLog, SendLog.decided_at),
        ):
            await s.execute(
                update(table).where(table.customer_id == cid).values({column: a_month_ago})
            )
    third = await stack.journeys.signed_up({"customer_id": cid, "message_id": f"{cid}-3"})
    assert third.action == "started"

    async def welcomes() -> list[str]:
        return [
            s
            for s in steps_of(journey_mails(stack.catcher, cid, "welcome_series"))
            if s == "welcome"
        ]

    assert await eventually(welcomes, lambda got: len(got) >= 2) == ["welcome", "welcome"]


@pytestmark_sqlite
async def test_without_an_entry_rule_the_welcome_stays_once_ever(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    assert (await stack.journeys.signed_up({"customer_id": cid})).action == "started"
    again = await stack.journeys.signed_up({"customer_id": cid, "message_id": f"{cid}-2"})
    assert again.action == "already_welcomed"
    x = await ops.explain(stack.sessions, stack.client, cid)
    assert [b for b in x.branches if b.name == "entry"] == []  # the id policy, not a rule
