"""Bad input gets a clear error naming what is wrong, and nothing is recorded or sent."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from temporalio.service import RPCError

from journeys.config import JourneyConfigError, load_journey
from starter.ingest.service import UnknownCustomer
from store.models import Cart, Customer, Event
from testkit.data import TEE, add_customer, email_for


async def _count(stack, model, customer_id: str) -> int:
    column = model.id if model is Customer else model.customer_id
    async with stack.sessions() as s:
        return int(await s.scalar(select(func.count()).where(column == customer_id)) or 0)


async def test_an_event_for_an_unknown_customer_is_refused_and_nothing_is_recorded(stack):
    cid = stack.new_customer_id()
    with pytest.raises(UnknownCustomer, match=cid):
        await stack.journeys.cart_updated({"customer_id": cid, "lines": [TEE]})

    assert await _count(stack, Event, cid) == 0
    assert await _count(stack, Cart, cid) == 0
    with pytest.raises(RPCError):
        await stack.client.get_workflow_handle(f"cart-recovery:{cid}").describe()


async def test_a_malformed_email_address_is_refused_naming_the_field(stack):
    cid = stack.new_customer_id()
    with pytest.raises(ValidationError) as caught:
        await stack.journeys.customer_upserted({"customer_id": cid, "email": "ada.example.com"})

    (error,) = caught.value.errors()
    assert error["loc"] == ("email",)
    assert "@" in error["msg"]
    assert await _count(stack, Customer, cid) == 0


async def test_a_bad_cart_line_is_refused_naming_the_line_and_field(stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    bad = {**TEE, "price": "-3"}
    with pytest.raises(ValidationError) as caught:
        await stack.journeys.cart_updated({"customer_id": cid, "lines": [TEE, bad]})

    assert caught.value.errors()[0]["loc"] == ("lines", 1, "price")
    assert await _count(stack, Event, cid) == 0


async def test_a_journey_naming_a_missing_template_fails_at_load_and_sends_nothing(make_stack):
    stack = await make_stack(
        cart_recovery={
            "steps": [{"name": "reminder_1", "after": "1h", "template": "no_such", "subject": "Hi"}]
        }
    )
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    with pytest.raises(JourneyConfigError) as caught:
        await stack.journeys.cart_updated({"customer_id": cid, "lines": [TEE]})

    message = str(caught.value)
    assert "cart_recovery.toml" in message
    assert "steps.0.template" in message and "no_such.html.j2" in message
    assert await _count(stack, Event, cid) == 0  # the event was rolled back with the failure
    assert stack.catcher.to(email_for(cid)) == []


def test_a_bad_journey_file_names_the_key_and_the_reason(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "broken.toml").write_text(
        'name = "broken"\nversion = 1\nholdout_share = 2\n'
        '[[steps]]\nname = "a"\nafter = "soon"\ntemplate = "t"\nsubject = "s"\n'
    )
    with pytest.raises(JourneyConfigError) as caught:
        load_journey("broken", tmp_path)
    message = str(caught.value)
    assert "broken.toml" in message
    assert "holdout_share" in message and "less than or equal to 1" in message
    assert "steps.0.after" in message


def test_delays_accept_short_and_iso_forms_and_speedup_divides_them(tmp_path):
    from datetime import timedelta

    from settings import ROOT

    config = load_journey("cart_recovery", ROOT / "journeys")
    assert [s.after for s in config.steps] == [
        timedelta(hours=1),
        timedelta(days=2),
        timedelta(days=3),
        timedelta(days=5),
        timedelta(days=7),
    ]
    fast = config.sped_up(3600)
    assert fast.steps[0].after == timedelta(seconds=1)
    assert fast.steps[-1].after == timedelta(days=7) / 3600
    assert config.steps[0].after == timedelta(hours=1)  # the original is untouched
