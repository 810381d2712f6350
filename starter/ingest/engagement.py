"""Opens and clicks of our emails, and every event nobody routes.

Every open and click is classified, a person's or a machine's (core/engagement.py: scanners,
image proxies, prefetch at delivery, every link at once, HEAD requests), from what the
tracking route saw (method, user agent, address), how long after the email's delivery it
came (the send log) and the other clicks of the same email. Both are kept, with the class
and the rule that decided (``events.engagement_class``, ``engagement_reason``,
``engagement_detail``); only a person's is told to the run, and only a person's counts when
a journey asks "did they react" (``store.events.counts_as_reaction``). A machine's is kept
under its own message id, so a person's later open or click of the same email is recorded
and told, not counted as the machine's repeat.

The first open of each email and the first click of each of its links are recorded; every
further one (a second look, a forwarded email) only counts as a repeat of it
(``events.repeats``): no new row, no new signal. A run is told once per email and kind (the
first human open, the first human click), so its history cannot grow with them.

Clicks of our own list links (unsubscribe, report this email, "keep writing to me"), when a
template sends them through the click tracker, are kept and never told: leaving the list is
not interest in its emails.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from core.contracts import Engagement as EngagementSignal
from core.engagement import BURST_SECONDS, Engagement, Fetch, as_reported, classify
from core.ids import parse_send_key
from observability import count_engagement
from starter.ingest.events import EmailEngaged, OtherEvent
from starter.ingest.service import SIGNALLED, Call, Handled, done
from store import events, repo
from store.models import Event, utcnow

# Paths of our own links under PUBLIC_BASE_URL that are not the shop's content.
LIST_LINKS = {"/u/": "unsubscribe", "/s/": "stay", "/r/": "report"}
# The stay page's button (Journeys.stay): the answer to a last call, pressed by a person.
STAY = Engagement(True, "person", "pressed the button of the 'keep writing to me' page")


async def engaged(call: Call, e: EmailEngaged) -> Handled:
    """Recorded against its send and classified; a person's first open or click of the
    email is told to its run. Any open or click ends a run of soft bounces: the address
    takes mail (a scanner's fetch proves delivery too)."""
    customer = call.customer
    if customer.attributes.get("soft_bounces"):
        customer.attributes = {**customer.attributes, "soft_bounces": 0}
    row = await events.event_by_message_id(call.s, message_id=call.source)
    if row is None:  # pragma: no cover - recorded in this transaction by handle()
        return done(e, "recorded")
    verdict = await _judge(call, e)
    list_link = _list_link(call, e.url)
    kept = await events.classify_engagement(
        call.s,
        event=row,
        engagement_class=verdict.engagement_class,
        reason=verdict.reason,
        detail=verdict.detail,
        move_to=None if verdict.human else machine_id(call.source),
        properties={"list_link": list_link} if list_link else None,
    )
    key = parse_send_key(e.send_key)
    if kept is row and key is not None and not list_link:  # the app's metrics
        count_engagement(
            call.s,
            workflow_id=key.workflow_id,
            step=key.step,
            kind=e.kind,
            engagement_class=verdict.engagement_class,
        )
    if kept is not row or key is None or not verdict.human or list_link:
        return done(e, "recorded")
    if e.kind == "clicked" and await _clicked_before(call, e, row):
        return done(e, "recorded")  # the run was told of this email's click already
    signal = EngagementSignal(kind=e.kind, step=key.step, url=e.url)
    await call.signal(key.workflow_id, "engaged", signal)
    return done(e, SIGNALLED)


def machine_id(message_id: str) -> str:
    """The message id a machine's open or click is kept under."""
    kept = f"machine:{message_id}"
    return kept if len(kept) <= 200 else f"machine:{hashlib.sha256(kept.encode()).hexdigest()}"


async def _judge(call: Call, e: EmailEngaged) -> Engagement:
    """Human or machine (core/engagement.classify), from the fetch and the store."""
    if e.method is None:  # not a fetch of our tracking links
        return (
            STAY
            if e.kind == "clicked" and e.url == "stay"
            else as_reported("click" if e.kind == "clicked" else "open")
        )
    now = utcnow()
    since: float | None = None
    if e.send_key:
        sent = await repo.get_send(call.s, key=e.send_key)
        delivered = (sent.sent_at or sent.claimed_at) if sent is not None else None
        if delivered is not None:
            since = max(0.0, (now - delivered).total_seconds())
    # Links fetched together by the same client (its user agent, as recorded): a person
    # clicking while a scanner checks the email is not part of the scanner's burst.
    agent = e.user_agent[:300] if e.user_agent else None
    burst: list[Event] = []
    if e.kind == "clicked" and e.send_key:
        window = now - timedelta(seconds=BURST_SECONDS)
        burst = [
            other
            for other in await events.engagement_of_send(
                call.s,
                customer_id=e.customer_id,
                send_key=e.send_key,
                name="Email Link Clicked",
            )
            if other.received_at >= window
            and other.message_id != call.source
            and (other.properties or {}).get("user_agent") == agent
        ]
    links = {str((o.properties or {}).get("url")) for o in burst} | {str(e.url)}
    verdict = classify(
        Fetch(
            kind="click" if e.kind == "clicked" else "open",
            user_agent=e.user_agent,
            remote_addr=e.remote_addr,
            method=e.method,
            seconds_since_delivery=since,
            links_fetched_together=len(links),
        )
    )
    if verdict.reason == "all_links_at_once":
        # The links fetched before this one in the same moment were the same machine.
        for other in burst:
            if other.engagement_class != "machine":
                await events.classify_engagement(
                    call.s,
                    event=other,
                    engagement_class="machine",
                    reason=verdict.reason,
                    detail=verdict.detail,
                    move_to=machine_id(other.message_id),
                )
    return verdict


def _list_link(call: Call, url: str | None) -> str | None:
    """Which of our own list links ``url`` is (unsubscribe, stay, report), if any."""
    base = call.ingest.settings.public_base_url.rstrip("/")
    if not url or not url.startswith(base):
        return None
    path = url[len(base) :]
    return next((name for prefix, name in LIST_LINKS.items() if path.startswith(prefix)), None)


async def _clicked_before(call: Call, e: EmailEngaged, row: Event) -> bool:
    """Did a person click another link of this email before (the run was told then)?"""
    assert e.send_key is not None
    clicks = await events.engagement_of_send(
        call.s, customer_id=e.customer_id, send_key=e.send_key, name="Email Link Clicked"
    )
    return any(c.id != row.id and events.counts_as_reaction(c) for c in clicks)


async def recorded_only(call: Call, e: OtherEvent) -> Handled:
    """Kept in the event log for later journeys; nothing is told."""
    return done(e, "recorded")
