"""Every identifier the system builds, built and parsed here only.

Workflow ids are deterministic (docs/architecture.md, decision 4): the same event never starts a
second run, and an operator finds a customer's run by typing ``<journey>:<customer id>``.
Send keys name one email of one run; they are the idempotency key of the send log, the
Message-ID's left part and what the tracking links carry.

Search attribute keys live here too: they are the ids operators search by in the UI.

Ids, search attributes, summaries and memo are not encrypted (the payload codec covers
payloads only), so a customer id that looks like an email address or a phone number never
appears in them in clear: ``customer_ref`` replaces it with ``h-<HMAC>`` under a key the
processes set once at start (``use_id_key``; ID_HASH_KEY). Plain ids (``c-42``) stay as they
are, so existing runs and tests keep their ids; an operator still types the customer id, and
the CLI hashes it the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime

from temporalio.common import SearchAttributeKey

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
JOURNEY = SearchAttributeKey.for_keyword("Journey")
JOURNEY_STEP = SearchAttributeKey.for_keyword("JourneyStep")
JOURNEY_OUTCOME = SearchAttributeKey.for_keyword("JourneyOutcome")
# The customer's lifecycle stage when the run started (core/lifecycle.py): "active, vip".
LIFECYCLE_STAGE = SearchAttributeKey.for_keyword("LifecycleStage")
SEARCH_ATTRIBUTES = (CUSTOMER_ID, JOURNEY, JOURNEY_STEP, JOURNEY_OUTCOME, LIFECYCLE_STAGE)

# The daily sweep's schedule id (the server appends the scheduled time to each run's id).
DAILY_SWEEP = "daily-sweep"


# Only for development and tests; every process that talks to Temporal sets its key from
# settings (starter.client.connect), and settings refuse to run without one in production.
DEVELOPMENT_ID_KEY = b"journeys: development-only customer id key"
_id_key = DEVELOPMENT_ID_KEY

# A phone number: digits (7 or more) with the usual separators and an optional leading "+".
_PHONE = re.compile(r"\+?[\d\s().\-/]+")


def use_id_key(key: bytes) -> None:
    """Set the key of ``customer_ref`` for this process. It must never change while runs
    live: their workflow ids were built with it."""
    global _id_key
    if not key:
        raise ValueError("the customer id key is empty")
    _id_key = key


def looks_personal(customer_id: str) -> bool:
    """An email address (anything with an @) or a phone number."""
    if "@" in customer_id:
        return True
    digits = sum(ch.isdigit() for ch in customer_id)
    return digits >= 7 and _PHONE.fullmatch(customer_id.strip()) is not None


def customer_ref(customer_id: str) -> str:
    """How a customer is named outside encrypted payloads: the id itself, or ``h-<24 hex>``
    (HMAC-SHA256) when it looks like an email address or a phone number."""
    if not looks_personal(customer_id):
        return customer_id
    digest = hmac.new(_id_key, customer_id.encode(), hashlib.sha256).hexdigest()
    return f"h-{digest[:24]}"


def journey_slug(journey: str) -> str:
    """``cart_recovery`` -> ``cart-recovery``: how a journey's name reads in workflow ids."""
    return journey.replace("_", "-")


def workflow_id(journey: str, customer_id: str) -> str:
    """The one live run of ``journey`` for a customer: ``cart-recovery:<customer ref>``."""
    return f"{journey_slug(journey)}:{customer_ref(customer_id)}"


def win_back_id(customer_id: str, last_order_at: datetime) -> str:
    """One win-back per lapse: the id names the last order before it."""
    return f"{workflow_id('win_back', customer_id)}:{last_order_at:%Y%m%d}"


def birthday_id(customer_id: str, year: int) -> str:
    """One birthday greeting per customer and year."""
    return f"{workflow_id('birthday', customer_id)}:{year}"


def vip_care_id(customer_id: str, year: int) -> str:
    """VIP care once a year per customer."""
    return f"{workflow_id('vip_care', customer_id)}:{year}"


def holiday_id(customer_id: str, holiday: str, year: int) -> str:
    """One greeting per customer, holiday and year (the holiday's name as a slug)."""
    slug = re.sub(r"[^a-z0-9]+", "-", holiday.lower()).strip("-")[:40]
    return f"{workflow_id('holidays', customer_id)}:{slug}:{year}"


def journey_of(workflow_id: str) -> str:
    """The journey a workflow id belongs to: ``cart-recovery:c-42`` -> ``cart_recovery``."""
    return workflow_id.split(":", 1)[0].replace("-", "_")


def stage_change_id(customer_id: str, stage: str, vip: bool, at: datetime) -> str:
    """The message id of a "Lifecycle Stage Changed" event (one per customer, stage, VIP
    standing and second): the sweep's and the shop's of the same change are one event."""
    return f"lifecycle:{customer_id}:{stage}:{'vip' if vip else ''}:{at:%Y%m%dT%H%M%S}"


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
