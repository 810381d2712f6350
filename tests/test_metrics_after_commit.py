"""The app's counters count a fact only once the store has it (issue 15 item 9): an open, a
click or a conversion moves its Prometheus counter when the transaction that records it
commits, never when it rolls back (a handler failing after the count, a deadlock the
ingest retries), and a savepoint released inside a transaction that then rolls back counts
nothing either. Read from the API's registry, as /metrics shows it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from observability import REGISTRY, after_commit
from starter.ingest import lifecycle
from starter.ingest.service import Call
from store.db import SessionFactory
from testkit.data import add_customer, entered
from testkit.stack import Stack


class Injected(RuntimeError):
    """A fault after the count, before the commit."""


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_an_increment_waits_for_the_commit_and_a_rollback_drops_it(
    sessions: SessionFactory,
) -> None:
    counted: list[str] = []
    with pytest.raises(Injected):
        async with sessions.begin() as s:
            after_commit(s, lambda: counted.append("rolled back"))
            raise Injected
    async with sessions.begin() as s:
        after_commit(s, lambda: counted.append("committed"))
        await s.execute(text("SELECT 1"))
        assert counted == []  # not before the commit
        async with s.begin_nested():  # a savepoint released: not the commit yet
            after_commit(s, lambda: counted.append("in a savepoint"))
        assert counted == []
    assert counted == ["committed", "in a savepoint"]
    with pytest.raises(Injected):
        async with sessions.begin() as s:
            async with s.begin_nested():
                after_commit(s, lambda: counted.append("savepoint of a rollback"))
            raise Injected
    async with sessions.begin() as s:  # the same factory's next transaction: nothing left over
        await s.execute(text("SELECT 1"))
    assert counted == ["committed", "in a savepoint"]


async def test_a_conversion_counts_when_its_order_is_committed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    journey = f"metrics_{uuid.uuid4().hex[:8]}"
    async with stack.sessions.begin() as s:
        at = datetime.now(UTC) - timedelta(days=1)
        await entered(s, cid, journey=journey, group="treated", at=at, new_customer=False)
    order = {"customer_id": cid, "order_id": f"{cid}-o1", "total": "19.90"}

    async def fails(call: Call) -> None:
        raise Injected("the order's transaction fails after the count")

    monkeypatch.setattr(lifecycle, "refresh_stage", fails)
    with pytest.raises(Injected):
        await stack.journeys.order_placed(order)
    assert _sample("journey_conversions_total", journey=journey, group="treated") == 0
    monkeypatch.undo()

    await stack.journeys.order_placed(order)
    assert _sample("journey_conversions_total", journey=journey, group="treated") == 1
    await stack.journeys.order_placed(order)  # the same order again: recorded before
    assert _sample("journey_conversions_total", journey=journey, group="treated") == 1


async def test_an_open_counts_when_it_is_committed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    tag = uuid.uuid4().hex[:8]
    opened = {
        "customer_id": cid,
        "kind": "opened",
        "send_key": f"metrics-{tag}:{cid}:run-1:hello",
    }
    labels = {"journey": f"metrics_{tag}", "step": "hello", "kind": "opened"}

    async def fails(self: Call, *args: Any) -> None:
        raise Injected("the open's transaction fails after the count")

    monkeypatch.setattr(Call, "signal", fails)
    with pytest.raises(Injected):
        await stack.journeys.engaged(opened)
    assert _sample("journey_engagements_total", **labels, engagement_class="human") == 0
    monkeypatch.undo()

    await stack.journeys.engaged(opened)
    assert _sample("journey_engagements_total", **labels, engagement_class="human") == 1
