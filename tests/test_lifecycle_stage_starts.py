"""Journeys that start on a stage change ("Lifecycle Stage Changed", a journey's
[start_on]): on the order that moves the customer, and in the daily sweep; deterministic
ids; a call from outside claiming a change starts nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.service import RPCError

from core.stage_starts import STAGE_STARTS
from journeys.config import (
    STARTS_ON_STAGE_CHANGE,
    JourneyConfigError,
    VipCareConfig,
    WinBackConfig,
    load_journey,
)
from store.migrate import upgrade
from testkit.data import TEE, add_customer, lapsed_customer
from testkit.stack import copy_journeys
from tests.test_lifecycle_journeys import daily_sweep


@pytest.fixture
async def db_url(tmp_path: Path) -> str:
    """A database of its own: the sweep looks at every customer in it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'starts.db'}"
    await upgrade(url)
    return url


async def exists(stack, wf_id: str) -> bool:
    try:
        await stack.client.get_workflow_handle(wf_id).describe()
    except RPCError:
        return False
    return True


async def test_the_order_that_makes_a_vip_starts_vip_care_at_once(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    small = await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"{cid}-1", "total": "100", "lines": [TEE]}
    )
    year = datetime.now(UTC).year
    assert not await exists(stack, f"vip-care:{cid}:{year}")

    big = await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"{cid}-2", "total": "450", "lines": [TEE]}
    )
    assert small.recorded and big.recorded
    assert await exists(stack, f"vip-care:{cid}:{year}")


async def test_a_call_from_outside_claiming_a_vip_starts_nothing(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    claimed = await stack.journeys.track(
        "Lifecycle Stage Changed",
        {"customer_id": cid, "from": "active", "to": "active", "vip": True, "became_vip": True},
    )
    assert claimed.action == "recorded"
    assert not await exists(stack, f"vip-care:{cid}:{datetime.now(UTC).year}")


async def test_the_daily_sweep_starts_a_journey_on_the_stage_it_moves_a_customer_to(
    make_stack,
):
    """VIP care set to start on "silent" too: the sweep that finds a customer silent starts
    it (they are no VIP, so the sweep's own VIP phase would not); a rerun starts no second."""
    stack = await make_stack(
        vip_care={"start_on": {"event": "Lifecycle Stage Changed", "to": ["silent"]}}
    )
    now = datetime.now(UTC).replace(microsecond=0)
    quiet, recent = f"quiet-{uuid.uuid4().hex[:6]}", f"recent-{uuid.uuid4().hex[:6]}"
    await lapsed_customer(stack, quiet, as_of=now, orders=[100])
    await lapsed_customer(stack, recent, as_of=now, orders=[10])

    result = await daily_sweep(stack, now + timedelta(days=1))
    assert result.counts
    assert await exists(stack, f"vip-care:{quiet}:{(now + timedelta(days=1)).year}")
    assert not await exists(stack, f"vip-care:{recent}:{(now + timedelta(days=1)).year}")


def test_start_on_is_refused_where_no_run_can_be_built_from_a_stage_change(tmp_path: Path):
    """[start_on] in a journey core/stage_starts.py cannot start fails when the TOML is
    loaded, naming the file and the journeys that can (it started nothing, silently)."""
    assert set(STAGE_STARTS) == STARTS_ON_STAGE_CHANGE
    journeys = copy_journeys(tmp_path / "journeys", win_back={"start_on": {"to": ["silent"]}})
    with pytest.raises(JourneyConfigError, match=r"win_back.toml: start_on: .*vip_care"):
        load_journey("win_back", journeys, WinBackConfig)
    assert load_journey("vip_care", journeys, VipCareConfig).start_on is not None
