"""Opens and clicks of our emails, and every event nobody routes.

The first open and the first click of each email are recorded and told to its run; every
further one (a second look, an image proxy, a forwarded email) only counts as a repeat of
that event (``events.repeats``): no new row, no new signal, so a run's history cannot grow
with them.
"""

from __future__ import annotations

from core.contracts import Engagement
from core.ids import parse_send_key
from starter.ingest.events import EmailEngaged, OtherEvent
from starter.ingest.service import SIGNALLED, Call, Handled, done


async def engaged(call: Call, e: EmailEngaged) -> Handled:
    """Recorded against its send; the send's run is told. Engagement ends a run of soft
    bounces: the address takes mail."""
    customer = call.customer
    if customer.attributes.get("soft_bounces"):
        customer.attributes = {**customer.attributes, "soft_bounces": 0}
    key = parse_send_key(e.send_key)
    if key is None:
        return done(e, "recorded")
    engagement = Engagement(kind=e.kind, step=key.step, url=e.url)
    await call.signal(key.workflow_id, "engaged", engagement)
    return done(e, SIGNALLED)


async def recorded_only(call: Call, e: OtherEvent) -> Handled:
    """Kept in the event log for later journeys; nothing is told."""
    return done(e, "recorded")
