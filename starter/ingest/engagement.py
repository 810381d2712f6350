"""Opens and clicks of our emails, and every event nobody routes."""

from __future__ import annotations

from core.contracts import Engagement
from core.ids import parse_send_key
from starter.ingest.events import EmailEngaged, OtherEvent
from starter.ingest.service import Call, EventResult, done, signalled


async def engaged(call: Call, e: EmailEngaged) -> EventResult:
    """Recorded against its send; the send's run is told. Engagement ends a run of soft
    bounces: the address takes mail."""
    customer = call.customer
    if customer.attributes.get("soft_bounces"):
        customer.attributes = {**customer.attributes, "soft_bounces": 0}
    key = parse_send_key(e.send_key)
    if key is None:
        return done(e, "recorded")
    engagement = Engagement(kind=e.kind, step=key.step, url=e.url)
    told = await call.runs.signal(key.workflow_id, "engaged", engagement)
    return done(e, signalled(told))


async def recorded_only(call: Call, e: OtherEvent) -> EventResult:
    """Kept in the event log for later journeys; nothing is told."""
    return done(e, "recorded")
