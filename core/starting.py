"""The one way to start a journey: id, id-reuse policy, search attributes, memo, summary.

Ids, search attributes, memo and summary are stored unencrypted: they carry the customer's
ref (``core.ids.customer_ref``) and the journey's name and version, never an address.

The starter (events), the daily sweep (win-back, birthdays), the bench and the history
recordings all start runs through ``start_journey``, so a run looks the same in the
Temporal UI whoever started it, and "once ever" / "one live run" hold everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from core.contracts import JourneyInput
from core.ids import CUSTOMER_ID, JOURNEY, LIFECYCLE_STAGE, customer_ref, workflow_id
from journeys.config import EntryRule


@dataclass(frozen=True)
class Entry:
    """How a journey is entered: its workflow type, and what a second start does.

    ``reuse``: ALLOW_DUPLICATE = a new run once the last one closed (one live run);
    REJECT_DUPLICATE = once per workflow id ever (welcome: once per customer; win-back and
    birthday ids name the lapse or the year, so once per lapse / year)."""

    workflow: str
    reuse: WorkflowIDReusePolicy


ENTRIES: dict[str, Entry] = {
    "cart_recovery": Entry("CartRecovery", WorkflowIDReusePolicy.ALLOW_DUPLICATE),
    "welcome_series": Entry("WelcomeSeries", WorkflowIDReusePolicy.REJECT_DUPLICATE),
    "new_customer_nurture": Entry("NewCustomerNurture", WorkflowIDReusePolicy.REJECT_DUPLICATE),
    "browse_follow_up": Entry("BrowseFollowUp", WorkflowIDReusePolicy.ALLOW_DUPLICATE),
    "win_back": Entry("WinBack", WorkflowIDReusePolicy.REJECT_DUPLICATE),
    "birthday": Entry("BirthdayGreeting", WorkflowIDReusePolicy.REJECT_DUPLICATE),
    "vip_care": Entry("VipCare", WorkflowIDReusePolicy.REJECT_DUPLICATE),
    "stimulation": Entry("RepeatedStimulation", WorkflowIDReusePolicy.REJECT_DUPLICATE),
    "holidays": Entry("HolidayGreeting", WorkflowIDReusePolicy.REJECT_DUPLICATE),
    # One live confirmation per customer; a signup again after it went out sends another.
    "confirm_subscription": Entry("ConfirmSubscription", WorkflowIDReusePolicy.ALLOW_DUPLICATE),
}


def summary(journey: str, customer_id: str) -> str:
    """What the Temporal UI shows as the run's summary: the customer's ref, never an
    address (summaries, memo and search attributes are not encrypted)."""
    return f"{journey.replace('_', ' ').capitalize()} for {customer_ref(customer_id)}"


async def start_journey(
    client: Client,
    inp: JourneyInput,
    *,
    task_queue: str,
    run_id: str | None = None,
    signal: tuple[str, BaseModel] | None = None,
) -> bool:
    """Start ``inp.config.name`` for ``inp.customer_id``; False when the id's policy refused
    a second run (already welcomed, already won back for this lapse...).

    ``run_id``: the workflow id, when it is not the journey's default
    (``<journey>:<customer>``), e.g. win-back's per-lapse id. ``signal``: signal-with-start,
    so a live run gets the signal instead of a second run starting (cart changes, views).
    Raises ``KeyError`` for a journey without an entry in ``ENTRIES``."""
    config = inp.config
    entry = ENTRIES[config.name]
    if config.entry is not None:  # the TOML's rule: the store checks it, the id policy holds it
        once = config.entry.rule == "once_ever"
        reuse = (
            WorkflowIDReusePolicy.REJECT_DUPLICATE
            if once
            else WorkflowIDReusePolicy.ALLOW_DUPLICATE
        )
        entry = Entry(entry.workflow, reuse)
    attributes = [
        SearchAttributePair(CUSTOMER_ID, customer_ref(inp.customer_id)),
        SearchAttributePair(JOURNEY, config.name),
    ]
    if inp.lifecycle_stage:
        attributes.append(SearchAttributePair(LIFECYCLE_STAGE, inp.lifecycle_stage))
    try:
        await client.start_workflow(
            entry.workflow,
            inp,
            id=run_id or workflow_id(config.name, inp.customer_id),
            task_queue=task_queue,
            id_reuse_policy=entry.reuse,
            search_attributes=TypedSearchAttributes(attributes),
            memo={"journey_version": config.version},
            static_summary=summary(config.name, inp.customer_id),
            start_signal=signal[0] if signal else None,
            start_signal_args=[signal[1]] if signal else [],
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


def entry_refusal(rule: EntryRule, entered: Sequence[datetime], now: datetime) -> str | None:
    """Why a customer may not enter again under ``rule`` (journeys' ``[entry]``), given when
    they entered before (``journey_entries``); None: they may. Pure, so a table test covers
    it; the starter asks it in the event's transaction, the id policy backs it up."""
    last = max(entered, default=None)
    if last is None or rule.rule == "one_live":
        return None
    if rule.rule == "once_ever":
        return f"once ever: entered {last:%Y-%m-%d}"
    if rule.rule == "cooldown":
        assert rule.cooldown is not None
        again = last + rule.cooldown
        if now < again:
            return f"cooldown {rule.cooldown}: entered {last:%Y-%m-%d}, again from {again:%Y-%m-%d}"
        return None
    assert rule.max_per_year is not None
    within = sorted(at for at in entered if at > now - YEAR)
    if len(within) >= rule.max_per_year:
        again = within[-rule.max_per_year] + YEAR
        return (
            f"at most {rule.max_per_year} a year: entered {len(within)} times since "
            f"{now - YEAR:%Y-%m-%d}, again from {again:%Y-%m-%d}"
        )
    return None


YEAR = timedelta(days=365)
