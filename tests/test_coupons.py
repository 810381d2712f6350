"""Coupon redemption: "Order Completed" with Segment's ``coupon`` (or a list of codes) over the
HTTP API records each code as what it was (redeemed, reused, foreign, expired, unknown); the
welcome series' day-7 branch on "used the coupon", the gift and reactivation paths beside it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from core.contracts import JourneyResult
from core.ids import workflow_id
from store import coupons
from store.db import SessionFactory
from store.models import Coupon, Customer, JourneyDecision
from testkit.data import add_customer
from testkit.engagement import PERSON, read_later
from testkit.mail import journey_mails, parts, steps_of, tracked_links, wait_for_mail
from testkit.stack import WRITE_KEY, Stack
from testkit.waiting import PATIENCE, eventually
from tests.test_step_holdout import delivered

ON_SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
BEARER = {"Authorization": f"Bearer {WRITE_KEY}"}
SHIRT = {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90", "category": "apparel"}


async def _welcome_coupon(stack: Stack, cid: str) -> str:
    """Sign up (the welcome comes with a first-order coupon) and return its code."""
    await add_customer(stack, cid)
    result = await stack.journeys.signed_up({"customer_id": cid})
    assert result.action == "started"

    async def coupon() -> Coupon | None:
        async with stack.sessions() as s:
            found: Coupon | None = await s.scalar(select(Coupon).where(Coupon.customer_id == cid))
            return found

    found = await eventually(coupon, lambda c: c is not None)
    assert found is not None and found.code.startswith("WELCOME-")
    return found.code


def _order(cid: str, order_id: str, at: datetime, **coupon: Any) -> dict[str, Any]:
    """Segment's "Order Completed" as a shop sends it."""
    return {
        "userId": cid,
        "event": "Order Completed",
        "timestamp": at.isoformat(),
        "properties": {
            "order_id": order_id,
            "revenue": 17.91,
            "discount": 1.99,
            "currency": "EUR",
            "products": [{"product_id": "TEE-1", "name": "Blue T-shirt", "price": 19.90}],
            **coupon,
        },
    }


@ON_SQLITE
async def test_order_completed_records_each_code_as_what_it_was(stack: Stack, http: Any) -> None:
    cid, other = stack.new_customer_id(), stack.new_customer_id()
    own, foreign = await _welcome_coupon(stack, cid), await _welcome_coupon(stack, other)
    async with stack.sessions.begin() as s:  # a coupon of cid's whose time ran out
        s.add(
            Coupon(
                code=f"OLD-{cid}".upper(),
                source_key=f"test:old:{cid}",
                customer_id=cid,
                journey="birthday",
                percent_off=20,
                expires_at=datetime.now(UTC) - timedelta(days=3),
            )
        )
    first_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    second_at = first_at + timedelta(minutes=2)

    # Segment's one ``coupon`` (in another case than written), then a list of codes
    one = _order(cid, f"o1-{cid}", first_at, coupon=own.lower())
    answer = await http.post("/v1/track", json=one, headers=BEARER)
    assert answer.status_code == 200, answer.text
    codes = [own, foreign, f"old-{cid}", "SPRING24"]
    many = _order(cid, f"o2-{cid}", second_at, coupons=codes)
    assert (await http.post("/v1/track", json=many, headers=BEARER)).status_code == 200
    # the first order again, under another message id: nothing new
    again = {**one, "messageId": f"again-{cid}"}
    assert (await http.post("/v1/track", json=again, headers=BEARER)).status_code == 200

    async with stack.sessions() as s:
        rows = await coupons.redemptions_of(s, customer_id=cid)
    got = [(r.code, r.order_id, r.status, r.owner_id, r.discount, r.redeemed_at) for r in rows]
    assert got == [
        (own, f"o1-{cid}", "redeemed", cid, Decimal("1.99"), first_at),
        (own, f"o2-{cid}", "reused", cid, Decimal("1.99"), second_at),
        (foreign, f"o2-{cid}", "foreign", other, Decimal("1.99"), second_at),
        (f"OLD-{cid}".upper(), f"o2-{cid}", "expired", cid, Decimal("1.99"), second_at),
        ("SPRING24", f"o2-{cid}", "unknown", None, Decimal("1.99"), second_at),
    ]
    assert rows[0].journey == "welcome_series" and rows[-1].journey is None


@ON_SQLITE
async def test_a_bad_coupon_code_is_refused_naming_the_field(stack: Stack, http: Any) -> None:
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    bad = _order(cid, f"o-{cid}", datetime.now(UTC), coupons=["OK-1", "no spaces please"])

    answer = await http.post("/v1/track", json=bad, headers=BEARER)

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "properties", "coupons", 1]


async def test_redemptions_on_both_databases(sessions: SessionFactory) -> None:
    """The same order twice records its codes once; a coupon redeemed is "used" for the run
    that gave it (its send key), not for another run."""
    tag = datetime.now(UTC).strftime("%H%M%S%f")
    cid, at = f"r-{tag}", datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    code = f"WELCOME-{tag}"
    async with sessions.begin() as s:
        s.add(Customer(id=cid, email=f"{cid}@shop.test"))
        s.add(
            Coupon(
                code=code,
                source_key=f"welcome-series:{cid}:run-1:welcome",
                customer_id=cid,
                journey="welcome_series",
                percent_off=10,
                expires_at=at + timedelta(days=30),
            )
        )
    for _ in range(2):
        async with sessions.begin() as s:
            rows = await coupons.redeem(
                s,
                order_id=f"o-{tag}",
                customer_id=cid,
                codes=[code.lower(), " ", "NOPE"],
                discount=Decimal("2.50"),
                placed_at=at + timedelta(days=1),
            )
            assert [(r.code, r.status) for r in rows] == [(code, "redeemed"), ("NOPE", "unknown")]
    async with sessions() as s:
        assert len(await coupons.redemptions_of(s, customer_id=cid)) == 2
        run = f"welcome-series:{cid}:run-1:"
        assert await coupons.redeemed_from_run(s, customer_id=cid, send_key_prefix=run)
        other = f"welcome-series:{cid}:run-2:"
        assert not await coupons.redeemed_from_run(s, customer_id=cid, send_key_prefix=other)


# -- the welcome series' day-7 branch --------------------------------------------------------


async def _used_the_coupon(stack: Stack, http: Any, cid: str) -> None:
    code = await _welcome_coupon(stack, cid)
    await stack.journeys.order_placed(
        {
            "customer_id": cid,
            "order_id": f"o-{cid}",
            "total": "17.91",
            "lines": [SHIRT],
            "coupon": code,
        }
    )


async def _opened_not_used(stack: Stack, http: Any, cid: str) -> None:
    await _welcome_coupon(stack, cid)
    await wait_for_mail(stack.catcher, f"{cid}@example.com", 1)
    (welcome,) = journey_mails(stack.catcher, cid, "welcome_series")
    (pixel,) = tracked_links(parts(welcome)[1], "o")
    await delivered(stack, [cid])
    await read_later(stack, cid)  # a person reading it, not a fetch at delivery
    assert (await http.get(pixel, headers=PERSON)).status_code == 200


async def _never_opened(stack: Stack, http: Any, cid: str) -> None:
    await _welcome_coupon(stack, cid)


PATHS = {
    # path: (what the customer does, day-7 branch, outcome, emails)
    "used_coupon": (_used_the_coupon, "used_coupon", "ordered", ["welcome", "thank_you"]),
    "gift_offer": (
        _opened_not_used,
        "gift_offer",
        "completed",
        ["welcome", "need_help", "feedback", "gift_offer", "preferences"],
    ),
    "reactivation": (
        _never_opened,
        "reactivation",
        "completed",
        ["welcome", "need_help", "feedback", "preferences"],
    ),
}


@ON_SQLITE
async def test_the_welcome_series_branches_on_day_7_on_the_used_coupon(
    stack: Stack, http: Any
) -> None:
    ids = {path: stack.new_customer_id() for path in PATHS}
    for path, (act, *_) in PATHS.items():
        await act(stack, http, ids[path])
    handles = [
        stack.client.get_workflow_handle(
            workflow_id("welcome_series", cid), result_type=JourneyResult
        )
        for cid in ids.values()
    ]
    await asyncio.gather(*(stack.fast_forward(h, timedelta(days=12, minutes=1)) for h in handles))
    results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), PATIENCE)

    for (path, (_, branch, outcome, emails)), result in zip(PATHS.items(), results, strict=True):
        cid = ids[path]
        assert result.outcome == outcome, path
        mails = journey_mails(stack.catcher, cid, "welcome_series")
        assert steps_of(mails) == emails, path
        async with stack.sessions() as s:
            decision = await s.scalar(
                select(JourneyDecision).where(
                    JourneyDecision.customer_id == cid, JourneyDecision.name == "day_7"
                )
            )
            customer = await s.get(Customer, cid)
        assert decision is not None and decision.value == branch, path
        tags = customer.attributes.get("tags", []) if customer is not None else None
        assert tags == (["reactivation"] if branch == "reactivation" else []), path
        thanks = "welcome coupon came in handy"
        assert (thanks in parts(mails[-1])[0]) == (branch == "used_coupon"), path
