"""What operators do: find a customer's runs, explain every send decision, cancel, pause.

Used by the CLI (``python -m starter journeys|explain|cancel|pause|resume ...``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from core.contracts import JourneyState
from core.ids import CUSTOMER_ID, JOURNEY, JOURNEY_OUTCOME, JOURNEY_STEP, customer_ref
from core.lifecycle import LifecycleConfig
from store import decisions, events, repo
from store import lifecycle as stages
from store.consent import ConsentRecord, consent_of_customer
from store.db import SessionFactory
from store.lifecycle import LifecycleView
from store.models import Customer, Event, JourneyDecision, JourneyPause, SendLog


class UnknownName(LookupError):
    """An operator named a journey or customer that does not exist; says which do."""


def journey_names(journeys_dir: Path) -> list[str]:
    """The journeys: every TOML in JOURNEYS_DIR whose ``name`` is its file's (others, such
    as lifecycle.toml, configure something else)."""
    names = []
    for path in sorted(journeys_dir.glob("*.toml")):
        try:
            named = tomllib.loads(path.read_text()).get("name")
        except (OSError, tomllib.TOMLDecodeError):
            continue  # a broken file is reported where the journey is loaded
        if named == path.stem:
            names.append(path.stem)
    return names


def journey_name(text: str, journeys_dir: Path) -> str:
    """The journey as its TOML, the ``Journey`` search attribute and the store name it
    (``cart_recovery``); the spelling of workflow ids (``cart-recovery``) means the same.
    Raises :class:`UnknownName` listing the journeys."""
    names = journey_names(journeys_dir)
    for candidate in (text, text.replace("-", "_")):
        if candidate in names:
            return candidate
    raise UnknownName(f"unknown journey {text!r}; journeys: {', '.join(names)}")


@dataclass(frozen=True)
class Run:
    workflow_id: str
    run_id: str
    journey: str
    status: str
    started: datetime
    step: str
    outcome: str
    state: JourneyState | None  # from the run's `state` query (None if it did not answer)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def customer_runs(
    client: Client, customer_id: str, *, running_only: bool = False, with_state: bool = True
) -> list[Run]:
    """The customer's journey runs, newest first (search attribute CustomerId: the id, or
    its hash when it looks like an email address or phone number)."""
    query = f"{CUSTOMER_ID.name} = {_quote(customer_ref(customer_id))}"
    if running_only:
        query += " AND ExecutionStatus = 'Running'"
    return await _runs(client, query, with_state=with_state)


async def journey_runs(client: Client, journey: str, *, running_only: bool = True) -> list[Run]:
    query = f"{JOURNEY.name} = {_quote(journey)}"
    if running_only:
        query += " AND ExecutionStatus = 'Running'"
    return await _runs(client, query, with_state=False)


async def _runs(client: Client, query: str, *, with_state: bool) -> list[Run]:
    runs = []
    async for wf in client.list_workflows(query):
        attrs = wf.typed_search_attributes
        state = None
        if with_state and wf.status == WorkflowExecutionStatus.RUNNING:
            try:
                handle = client.get_workflow_handle(wf.id, run_id=wf.run_id)
                state = await handle.query("state", result_type=JourneyState)
            except RPCError:
                state = None
        runs.append(
            Run(
                workflow_id=wf.id,
                run_id=wf.run_id,
                journey=attrs.get(JOURNEY) or wf.workflow_type,
                status=wf.status.name if wf.status else "UNKNOWN",
                started=wf.start_time,
                step=attrs.get(JOURNEY_STEP) or "",
                outcome=attrs.get(JOURNEY_OUTCOME) or "",
                state=state,
            )
        )
    return sorted(runs, key=lambda r: r.started, reverse=True)


@dataclass(frozen=True)
class Explanation:
    customer: Customer | None
    suppression: str | None
    sends: list[SendLog]
    branches: list[JourneyDecision]
    held: list[dict[str, Any]]  # deferred / paused decisions of running runs, from their state
    # Opens and clicks, oldest first, each with its class (human | machine) and reason.
    engagement: list[Event] = field(default_factory=list)
    lifecycle: LifecycleView | None = None  # stage, since when, touch budget
    consent: ConsentRecord | None = None  # where, when and to what the address consented
    runs: list[Run] = field(default_factory=list)  # every run of the customer, newest first
    opted_out: list[str] = field(default_factory=list)  # journeys they unsubscribed from
    journey_pauses: list[JourneyPause] = field(default_factory=list)  # whole journeys paused

    @property
    def known(self) -> bool:
        """A profile in the store or a run in Temporal (a run may outlive its profile)."""
        return self.customer is not None or bool(self.runs)

    @property
    def discounted(self) -> list[Event]:
        """Opens and clicks no decision counted: a machine's (scanner, image proxy, prefetch
        at delivery, every link at once, HEAD), or a click of one of our list links."""
        return [e for e in self.engagement if not events.counts_as_reaction(e)]

    @property
    def uncertain(self) -> list[SendLog]:
        """Sends whose final dot went out with no reply recorded: the relay may have them."""
        return [row for row in self.sends if row.status == "uncertain"]


async def explain(
    sessions: SessionFactory,
    client: Client,
    customer_id: str,
    *,
    lifecycle: LifecycleConfig | None = None,
) -> Explanation:
    """Every send decision for the customer with its reason, and the branches taken."""
    async with sessions() as s:
        customer = await repo.get_customer(s, customer_id=customer_id)
        reasons = (
            await repo.suppression_reasons(s, email=customer.email) if customer is not None else []
        )
        sends = await repo.sends_for_customer(s, customer_id=customer_id)
        consent_record = await consent_of_customer(s, customer_id=customer_id)
        engagement = await events.engagement_of_customer(s, customer_id=customer_id)
        life = (
            await stages.view(s, customer, lifecycle or LifecycleConfig())
            if customer is not None
            else None
        )
        branches = list(
            await s.scalars(
                select(JourneyDecision)
                .where(JourneyDecision.customer_id == customer_id)
                .order_by(JourneyDecision.decided_at)
            )
        )
        pauses = list(await s.scalars(select(JourneyPause).order_by(JourneyPause.journey)))
    runs = await customer_runs(client, customer_id)
    held = []
    for run in runs:
        latest = {d.step: d for d in run.state.decisions} if run.state else {}
        for d in latest.values():  # a step deferred and since sent or skipped is not held
            if d.status == "deferred":
                held.append(
                    {"journey": run.journey, "step": d.step, "at": d.at, "reason": d.reason}
                )
    return Explanation(
        customer=customer,
        suppression="; ".join(
            f"{r.reason} since {r.created_at:%Y-%m-%d}"
            + (f" ({r.detail})" if r.detail else "")
            + (f" [{r.source}]" if r.source else "")
            for r in reasons
        )
        or None,
        sends=sends,
        branches=branches,
        held=held,
        consent=consent_record,
        engagement=engagement,
        lifecycle=life,
        runs=runs,
        opted_out=list(customer.attributes.get("unsubscribed_journeys", [])) if customer else [],
        journey_pauses=pauses,
    )


def consent_line(record: ConsentRecord) -> str:
    """The address's consent for people: source, time, double opt-in and its confirmation
    (when, IP address, user agent), and the text agreed to."""
    line = f"consent: {record.source}, {record.given_at:%Y-%m-%d %H:%M} UTC"
    if not record.double_opt_in:
        line += ", single opt-in"
    elif record.confirmed_at is None:
        line += ", double opt-in: NOT CONFIRMED yet (no marketing email until it is)"
    else:
        line += (
            f", double opt-in confirmed {record.confirmed_at:%Y-%m-%d %H:%M} UTC"
            f" from {record.confirm_ip or 'an unknown address'}"
            f" ({record.confirm_user_agent or 'no user agent'})"
        )
    return f'{line}; agreed to: "{record.text}"'


def engagement_line(e: Event) -> str:
    """One open or click for people: when, what, of which email, counted or not and why."""
    props = e.properties or {}
    what = "open" if e.name == "Email Opened" else f"click {props.get('url') or ''}".strip()
    if events.counts_as_reaction(e):
        verdict = f"counted ({e.engagement_reason or 'person'})"
    elif props.get("list_link"):
        verdict = f"not counted: a click of the {props['list_link']} link"
    else:
        verdict = f"DISCOUNTED, a machine's: {e.engagement_reason} ({e.engagement_detail})"
    again = f" [+{e.repeats} more]" if e.repeats else ""
    step = str(props.get("step") or "")
    return f"{e.received_at:%Y-%m-%d %H:%M:%S}  {step:22} {what}  {verdict}{again}"


async def cancel(client: Client, customer_id: str, journey: str | None = None) -> list[str]:
    """Cancel the customer's running journeys (or one of them); returns the workflow ids."""
    done = []
    for run in await customer_runs(client, customer_id, running_only=True, with_state=False):
        if journey is None or run.journey == journey:
            await client.get_workflow_handle(run.workflow_id, run_id=run.run_id).cancel()
            done.append(run.workflow_id)
    return done


async def pause_customer(
    client: Client, customer_id: str, *, paused: bool, reason: str = "operator"
) -> list[str]:
    """Hold (or release) the sends of the customer's running journeys."""
    done = []
    for run in await customer_runs(client, customer_id, running_only=True, with_state=False):
        handle = client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
        await handle.signal("pause" if paused else "resume", {"reason": reason})
        done.append(run.workflow_id)
    return done


async def pause_journey(
    sessions: SessionFactory, client: Client, journey: str, *, paused: bool, reason: str = ""
) -> int:
    """Pause a whole journey: every send of it, in running and new runs, is held until
    resumed (then the running ones are woken at once). Returns the runs woken."""
    async with sessions.begin() as s:
        await decisions.set_journey_pause(s, journey=journey, paused=paused, reason=reason or None)
    if paused:
        return 0
    woken = 0
    for run in await journey_runs(client, journey):
        await client.get_workflow_handle(run.workflow_id, run_id=run.run_id).signal(
            "wake", {"reason": "journey resumed"}
        )
        woken += 1
    return woken
