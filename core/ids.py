"""Every identifier the system builds, built and parsed here only.

Workflow ids are deterministic (ARCHITECTURE.md, decision 4): the same event never starts a
second run, and an operator finds a customer's run by typing ``<journey>:<customer id>``.
Send keys name one email of one run; they are the idempotency key of the send log, the
Message-ID's left part and what the tracking links carry.

Search attribute keys live here too: they are the ids operators search by in the UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio.common import SearchAttributeKey

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
JOURNEY = SearchAttributeKey.for_keyword("Journey")
JOURNEY_STEP = SearchAttributeKey.for_keyword("JourneyStep")
JOURNEY_OUTCOME = SearchAttributeKey.for_keyword("JourneyOutcome")
SEARCH_ATTRIBUTES = (CUSTOMER_ID, JOURNEY, JOURNEY_STEP, JOURNEY_OUTCOME)

# The daily sweep's schedule id (the server appends the scheduled time to each run's id).
DAILY_SWEEP = "daily-sweep"


def journey_slug(journey: str) -> str:
    """``cart_recovery`` -> ``cart-recovery``: how a journey's name reads in workflow ids."""
    return journey.replace("_", "-")


def workflow_id(journey: str, customer_id: str) -> str:
    """The one live run of ``journey`` for a customer: ``cart-recovery:<customer>``."""
    return f"{journey_slug(journey)}:{customer_id}"


def win_back_id(customer_id: str, last_order_at: datetime) -> str:
    """One win-back per lapse: the id names the last order before it."""
    return f"{workflow_id('win_back', customer_id)}:{last_order_at:%Y%m%d}"


def birthday_id(customer_id: str, year: int) -> str:
    """One birthday greeting per customer and year."""
    return f"{workflow_id('birthday', customer_id)}:{year}"


def send_key(workflow_id: str, run_chain_id: str, step: str) -> str:
    """One email of one run: ``<workflow id>:<first execution run id>:<step>``.

    The run chain id (``first_execution_run_id``) is stable across continue-as-new and new
    for each reuse of the workflow id, so a second cart journey never meets the first one's
    keys."""
    return f"{workflow_id}:{run_chain_id}:{step}"


def run_key_prefix(workflow_id: str, run_chain_id: str) -> str:
    """The prefix every send key of one run shares."""
    return f"{workflow_id}:{run_chain_id}:"


@dataclass(frozen=True)
class SendKey:
    workflow_id: str
    run_chain_id: str
    step: str


def parse_send_key(key: str | None) -> SendKey | None:
    """The parts of a send key, or None for anything that is not one. Workflow ids contain
    colons; the run chain id (a UUID) and the step name never do."""
    if not key or key.count(":") < 2:
        return None
    wf_id, run_chain_id, step = key.rsplit(":", 2)
    if not (wf_id and run_chain_id and step):
        return None
    return SendKey(workflow_id=wf_id, run_chain_id=run_chain_id, step=step)
