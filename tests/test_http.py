"""The HTTP API with httpx against the app, the real dev server, catcher and databases behind."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from core import tokens
from core.zones import zone_at_local_hour
from starter.http.segment import Prepared, prepare_call
from starter.ingest.service import EventResult, settled_together
from store.models import Cart, Customer, Event, Outbox, Product, Suppression
from testkit.data import TEE, abandon_cart, add_customer, email_for
from testkit.engagement import PERSON, read_later
from testkit.mail import parts, wait_for_mail
from testkit.stack import WRITE_KEY
from testkit.waiting import PATIENCE, eventually, eventually_passes
from workflows.cart_recovery import CartRecovery

BEARER = {"Authorization": f"Bearer {WRITE_KEY}"}


async def _events(stack, customer_id: str, name: str | None = None) -> list[Event]:
    async with stack.sessions() as s:
        query = select(Event).where(Event.customer_id == customer_id)
        if name:
            query = query.where(Event.name == name)
        return list((await s.scalars(query.order_by(Event.id))).all())


def _identify(cid: str, **traits: Any) -> dict[str, Any]:
    base = {"email": email_for(cid), "firstName": "Ada", "timezone": zone_at_local_hour(11)}
    return {"userId": cid, "traits": {**base, **traits}}


# -- authentication ---------------------------------------------------------------------


async def test_the_write_key_is_required_as_basic_user_or_bearer_token(http, stack):
    cid = stack.new_customer_id()
    body = _identify(cid)
    assert (await http.post("/v1/identify", json=body)).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await http.post("/v1/identify", json=body, headers=wrong)).status_code == 401
    garbage = {"Authorization": "Basic %%%"}
    assert (await http.post("/v1/identify", json=body, headers=garbage)).status_code == 401
    assert await _events(stack, cid) == []

    basic = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()  # as Segment sends it
    answer = await http.post("/v1/identify", json=body, headers={"Authorization": f"Basic {basic}"})
    assert answer.status_code == 200, answer.text
    answer = await http.post("/v1/identify", json=_identify(cid, lastName="L"), headers=BEARER)
    assert answer.status_code == 200
    assert answer.json() == {"success": True, "duplicate": False, "action": "recorded"}


# -- ingestion --------------------------------------------------------------------------


async def test_identify_records_the_profile_and_keeps_other_traits(http, stack):
    cid = stack.new_customer_id()
    body = _identify(cid, lastName="Lovelace", timezone="Europe/Berlin", plan="premium")
    assert (await http.post("/v1/identify", json=body, headers=BEARER)).status_code == 200
    async with stack.sessions() as s:
        customer = await s.get(Customer, cid)
    assert customer is not None
    assert (customer.email, customer.first_name, customer.last_name, customer.timezone) == (
        email_for(cid),
        "Ada",
        "Lovelace",
        "Europe/Berlin",
    )
    assert customer.attributes["plan"] == "premium"


async def test_the_same_message_twice_is_recorded_and_routed_once(http, stack):
    cid = stack.new_customer_id()
    await http.post("/v1/identify", json=_identify(cid), headers=BEARER)
    call = {
        "userId": cid,
        "event": "Checkout Started",
        "messageId": f"m-{cid}",
        "properties": {"products": [{"sku": "TEE-1", "name": "Blue T-shirt", "price": 19.9}]},
    }
    first = await http.post("/v1/track", json=call, headers=BEARER)
    second = await http.post("/v1/track", json=call, headers=BEARER)

    assert first.json() == {"success": True, "duplicate": False, "action": "started_or_signalled"}
    assert second.status_code == 200
    assert second.json()["duplicate"] is True
    assert len(await _events(stack, cid, "Cart Updated")) == 1
    handle = stack.client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{cid}")
    history = await handle.fetch_history()
    assert (
        sum(1 for e in history.events if e.HasField("workflow_execution_signaled_event_attributes"))
        == 1
    )
    await handle.terminate("test done")


async def test_a_bad_body_gets_422_naming_the_field_and_nothing_is_recorded(http, stack):
    cid = stack.new_customer_id()
    await http.post("/v1/identify", json=_identify(cid), headers=BEARER)

    bad_email = await http.post(
        "/v1/identify", json={"userId": cid, "traits": {"email": "nope"}}, headers=BEARER
    )
    assert bad_email.status_code == 422
    assert bad_email.json()["detail"][0]["loc"] == ["body", "traits", "email"]

    no_order_id = await http.post(
        "/v1/track",
        json={"userId": cid, "event": "Order Completed", "properties": {"total": 10}},
        headers=BEARER,
    )
    assert no_order_id.status_code == 422
    (error,) = no_order_id.json()["detail"]
    assert error["loc"] == ["body", "properties", "order_id"]
    assert error["msg"] == "Field required"

    negative = await http.post(
        "/v1/track",
        json={
            "userId": cid,
            "event": "Product Added",
            "properties": {"sku": "X", "name": "X", "price": -1},
        },
        headers=BEARER,
    )
    assert negative.status_code == 422
    assert negative.json()["detail"][0]["loc"] == ["body", "properties", "price"]

    unknown = await http.post(
        "/v1/track", json={"userId": "nobody-" + cid, "event": "Signed Up"}, headers=BEARER
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "userId"]
    new_without_email = await http.post(
        "/v1/identify", json={"userId": "new-" + cid, "traits": {}}, headers=BEARER
    )
    assert new_without_email.status_code == 422
    assert new_without_email.json()["detail"][0]["loc"] == ["body", "traits", "email"]

    assert [e.name for e in await _events(stack, cid)] == ["Identify"]


async def test_a_batch_with_one_bad_call_is_refused_whole_naming_that_call(http, stack):
    good, other = stack.new_customer_id(), stack.new_customer_id()
    batch = {
        "batch": [
            {"type": "identify", **_identify(good)},
            {"type": "track", "userId": good, "event": "Order Completed", "properties": {}},
            {"type": "identify", **_identify(other)},
        ]
    }
    answer = await http.post("/v1/batch", json=batch, headers=BEARER)

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "batch", 1, "properties", "order_id"]
    async with stack.sessions() as s:
        created = await s.scalar(select(func.count()).where(Customer.id.in_([good, other])))
    assert created == 0
    assert await _events(stack, good) == []


async def test_a_batch_of_many_customers_is_answered_once_committed_and_starts_every_journey(
    http, stack
):
    """The batch's journeys are started together after its calls are committed: each call
    is answered started, or queued when Temporal took longer than the batch waits (the
    relay starts it then); every journey starts."""
    ids = [stack.new_customer_id() for _ in range(12)]
    identified = await http.post(
        "/v1/batch",
        json={"batch": [{"type": "identify", **_identify(cid)} for cid in ids]},
        headers=BEARER,
    )
    carts = {
        "batch": [
            {
                "type": "track",
                "userId": cid,
                "event": "Product Added",
                "messageId": f"add-{cid}",
                "properties": {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90"},
            }
            for cid in ids
        ]
    }
    answer = await http.post("/v1/batch", json=carts, headers=BEARER)

    assert identified.status_code == 200, identified.text
    assert answer.status_code == 200, answer.text
    actions = [r["action"] for r in answer.json()["results"]]
    assert len(actions) == 12 and set(actions) <= {"started_or_signalled", "queued"}, actions
    for cid in ids:
        handle = stack.client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{cid}")
        assert await eventually_passes(_status_of(handle)) == WorkflowExecutionStatus.RUNNING
        await handle.terminate("test done")


def _status_of(handle: WorkflowHandle[Any, Any]) -> Callable[[], Awaitable[Any]]:
    """The run's status, read when called (raises while the run does not exist yet)."""

    async def status() -> WorkflowExecutionStatus | None:
        return (await handle.describe()).status

    return status


async def test_a_batch_runs_its_calls_in_order_and_starts_the_journey(http, stack):
    cid = stack.new_customer_id()
    batch = {
        "batch": [
            {"type": "identify", **_identify(cid)},
            {
                "type": "track",
                "userId": cid,
                "event": "Product Added",
                "properties": {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90"},
            },
            {
                "type": "track",
                "userId": cid,
                "event": "Product Added",
                "properties": {"sku": "MUG-7", "name": "Coffee mug", "price": "8.50"},
            },
            {
                "type": "track",
                "userId": cid,
                "event": "Product Removed",
                "properties": {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90"},
            },
            {"type": "track", "userId": cid, "event": "Some Custom Event", "properties": {"a": 1}},
        ]
    }
    answer = await http.post("/v1/batch", json=batch, headers=BEARER)
    assert answer.status_code == 200, answer.text
    actions = [r["action"] for r in answer.json()["results"]]
    # started together at the end; queued if Temporal took longer than the batch waits
    assert actions[0] == actions[4] == "recorded", actions
    assert set(actions[1:4]) <= {"started_or_signalled", "queued"}, actions
    handle = stack.client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{cid}")
    await eventually_passes(_status_of(handle))
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    (mail,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
    text, _ = parts(mail)
    assert "Coffee mug" in text and "Blue T-shirt" not in text
    await handle.terminate("test done")

    too_many = {"batch": [{"type": "track", "userId": cid, "event": "E"}] * 101}
    answer = await http.post("/v1/batch", json=too_many, headers=BEARER)
    assert answer.status_code == 422 and "at most 100" in answer.text


async def test_a_call_that_fails_rolls_the_whole_batch_back(stack):
    """A batch is one transaction: when a call fails past validation (the store refuses
    it, the process is stopping), the calls before it are not recorded either, nor are
    their journeys started."""
    cid = stack.new_customer_id()
    sku = f"SKU-{cid}"
    ingest = stack.journeys.ingest
    identify = prepare_call({"type": "identify", **_identify(cid)}, None)
    added = prepare_call(
        {
            "type": "track",
            "userId": cid,
            "event": "Product Added",
            "properties": {"sku": sku, "name": "Blue T-shirt", "price": "19.90"},
        },
        None,
    )
    assert isinstance(identify, Prepared) and isinstance(added, Prepared)

    async def first() -> EventResult:
        return await identify.run(ingest)

    async def second() -> EventResult:
        return await added.run(ingest)

    async def third() -> EventResult:
        raise RuntimeError("the third call fails")

    with pytest.raises(RuntimeError, match="third call"):
        await settled_together(ingest, [first, second, third], customers={cid})

    async with stack.sessions() as s:
        customer = await s.get(Customer, cid)
        product = await s.get(Product, sku)
        rows = await s.scalar(select(func.count()).where(Outbox.customer_id == cid))
    assert (customer, product, rows) == (None, None, 0)
    assert await _events(stack, cid) == []
    handle = stack.client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{cid}")
    with pytest.raises(RPCError):  # never started
        await handle.describe()


async def test_products_seen_in_a_batch_keep_the_latest_details_and_every_quantity_ordered(
    http, stack
):
    """A batch writes the products its calls saw once each, at its end: the later call's
    price and name win, quantities ordered add up, as when the calls come one by one."""
    a, b = stack.new_customer_id(), stack.new_customer_id()
    sku = f"SKU-{a}"

    def line(name: str, price: str, quantity: int = 1) -> dict[str, Any]:
        return {"sku": sku, "name": name, "price": price, "quantity": quantity}

    def order(cid: str, quantity: int) -> dict[str, Any]:
        props = {"order_id": f"o-{cid}", "total": 10, "products": [line("Mug", "9", quantity)]}
        return {"type": "track", "userId": cid, "event": "Order Completed", "properties": props}

    batch = {
        "batch": [
            {"type": "identify", **_identify(a)},
            {"type": "identify", **_identify(b)},
            {
                "type": "track",
                "userId": a,
                "event": "Product Added",
                "properties": line("Mug", "8"),
            },
            order(a, 2),
            {
                "type": "track",
                "userId": b,
                "event": "Product Added",
                "properties": line("Mug", "9"),
            },
            order(b, 3),
            {
                "type": "track",
                "userId": b,
                "event": "Product Viewed",
                "properties": line("Mug L", "10"),
            },
        ]
    }
    answer = await http.post("/v1/batch", json=batch, headers=BEARER)

    assert answer.status_code == 200, answer.text
    async with stack.sessions() as s:
        product = await s.get(Product, sku)
    assert product is not None
    assert (product.name, product.price, product.times_ordered) == ("Mug L", Decimal("10"), 5)


async def test_batches_at_once_naming_the_same_products_in_turn_all_land(http, stack):
    """Two batches at a time whose carts name two products in opposite orders: the batch
    locks its customers in id order and writes its products last in SKU order, so no
    batch waits on another in a circle (a deadlock PostgreSQL would end by failing one)."""
    first, second = f"P-{stack.new_customer_id()}", f"Q-{stack.new_customer_id()}"

    def cart(cid: str, skus: list[str]) -> dict[str, Any]:
        lines = [{"sku": sku, "name": sku, "price": "5", "quantity": 1} for sku in skus]
        props = {"currency": "EUR", "products": lines}
        return {"type": "track", "userId": cid, "event": "Checkout Started", "properties": props}

    groups = [[stack.new_customer_id() for _ in range(10)] for _ in range(6)]
    everyone = [cid for ids in groups for cid in ids]
    identified = await http.post(
        "/v1/batch",
        json={"batch": [{"type": "identify", **_identify(cid)} for cid in everyone]},
        headers=BEARER,
    )
    assert identified.status_code == 200, identified.text
    batches = [
        {"batch": [cart(cid, [first, second] if i % 2 else [second, first]) for cid in ids]}
        for i, ids in enumerate(groups)
    ]
    answers = await asyncio.gather(
        *(http.post("/v1/batch", json=batch, headers=BEARER) for batch in batches)
    )

    assert [a.status_code for a in answers] == [200] * len(batches), [a.text for a in answers]
    async with stack.sessions() as s:
        carts = await s.scalar(select(func.count()).where(Cart.customer_id.in_(everyone)))
        products = await s.scalar(select(func.count()).where(Product.sku.in_([first, second])))
    assert (carts, products) == (len(everyone), 2)
    for cid in everyone:
        handle = stack.client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{cid}")
        assert await eventually_passes(_status_of(handle)) == WorkflowExecutionStatus.RUNNING
        await handle.terminate("test done")


async def test_segment_spec_examples_are_accepted_as_they_are(http, stack):
    cid = stack.new_customer_id()
    identify = {  # the identify example of Segment's spec, with our user id and address
        "anonymousId": "507f191e810c19729de860ea",
        "channel": "browser",
        "context": {"ip": "8.8.8.8", "userAgent": "Mozilla/5.0 (Macintosh)"},
        "integrations": {"All": False, "Mixpanel": True, "Salesforce": True},
        "messageId": f"022bb90c-bbac-11e4-8dfc-{cid}",
        "receivedAt": "2015-02-23T22:28:55.387Z",
        "sentAt": "2015-02-23T22:28:55.111Z",
        "timestamp": "2015-02-23T22:28:55.111Z",
        "traits": {
            "name": "Peter Gibbons",
            "email": email_for(cid),
            "plan": "premium",
            "logins": 5,
            "address": {"street": "6th St", "city": "San Francisco", "state": "CA"},
        },
        "type": "identify",
        "userId": cid,
        "version": "1.1",
    }
    product_added = {  # Segment e-commerce spec, "Product Added"
        "type": "track",
        "userId": cid,
        "event": "Product Added",
        "properties": {
            "cart_id": "skdjsidjsdkdj29j",
            "product_id": "507f1f77bcf86cd799439011",
            "sku": "G-32",
            "category": "Games",
            "name": "Monopoly: 3rd Edition",
            "brand": "Hasbro",
            "variant": "200 pieces",
            "price": 18.99,
            "quantity": 1,
            "coupon": "MAYDEALS",
            "position": 3,
            "url": "https://www.example.com/product/path",
            "image_url": "https://www.example.com/product/path.jpg",
        },
    }
    order_completed = {  # Segment e-commerce spec, "Order Completed"
        "type": "track",
        "userId": cid,
        "event": "Order Completed",
        "properties": {
            "checkout_id": "fksdjfsdjfisjf9sdfjsd9f",
            "order_id": "50314b8e9bcf000000000000",
            "affiliation": "Google Store",
            "total": 27.50,
            "subtotal": 22.50,
            "revenue": 25.00,
            "shipping": 3,
            "tax": 2,
            "discount": 2.5,
            "coupon": "hasbros",
            "currency": "USD",
            "products": [
                {
                    "product_id": "507f1f77bcf86cd799439011",
                    "sku": "45790-32",
                    "name": "Monopoly: 3rd Edition",
                    "price": 19,
                    "quantity": 1,
                    "category": "Games",
                    "url": "https://www.example.com/product/path",
                    "image_url": "https://www.example.com/product/path.jpg",
                },
                {
                    "product_id": "505bd76785ebb509fc183733",
                    "sku": "46493-32",
                    "name": "Uno Card Game",
                    "price": 3,
                    "quantity": 2,
                    "category": "Games",
                },
            ],
        },
    }
    for body in (identify, product_added, order_completed):
        path = f"/v1/{body['type']}"
        answer = await http.post(path, json=body, headers=BEARER)
        assert answer.status_code == 200, (path, answer.text)
    assert [e.name for e in await _events(stack, cid)] == [
        "Identify",
        "Product Added",
        "Order Completed",
        "Lifecycle Stage Changed",  # the first order: a prospect becomes a new customer
    ]
    handle = stack.client.get_workflow_handle_for(CartRecovery.run, f"cart-recovery:{cid}")
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.outcome == "ordered"


# -- tracking and unsubscribe -------------------------------------------------------------


async def _first_reminder(stack, cid: str):
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    (mail,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
    return handle, mail


def _path(url: str) -> str:
    return re.sub(r"^https://shop\.test", "", url)


async def test_open_pixel_and_click_redirect_record_against_the_send(http, stack):
    cid = stack.new_customer_id()
    handle, mail = await _first_reminder(stack, cid)
    _, html = parts(mail)
    pixel = re.search(r'<img src="(https://shop\.test/t/o/[^"]+)"', html)
    clicks = re.findall(r'href="(https://shop\.test/t/c/[^"]+)"', html)
    assert pixel and clicks
    assert f"https://shop.test/checkout/{cid}" not in html  # every shop link goes via tracking

    await read_later(stack, cid)  # a person, not a scanner at delivery
    opened = await http.get(_path(pixel.group(1)), headers=PERSON)
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
    assert "no-store" in opened.headers["cache-control"]
    clicked = await http.get(_path(clicks[0]), headers=PERSON)
    assert clicked.status_code == 302
    assert clicked.headers["location"] == f"https://shop.test/checkout/{cid}"

    events = await _events(stack, cid)
    engagement = [e for e in events if e.name in ("Email Opened", "Email Link Clicked")]
    assert [e.name for e in engagement] == ["Email Opened", "Email Link Clicked"]
    assert all(e.properties["step"] == "reminder_1" for e in engagement)
    assert engagement[1].properties["url"] == f"https://shop.test/checkout/{cid}"
    state = await handle.query(CartRecovery.state)
    assert [e.kind for e in state.engagements] == ["opened", "clicked"]
    await handle.terminate("test done")


async def test_forged_or_altered_tokens_record_nothing_and_redirect_nowhere(http, stack):
    cid = stack.new_customer_id()
    handle, mail = await _first_reminder(stack, cid)
    _, html = parts(mail)
    click = _path(re.findall(r'href="(https://shop\.test/t/c/[^"]+)"', html)[0])
    token = click.rsplit("/", 1)[1]
    body, mac = token.split(".")

    evil = tokens.sign(
        {"c": cid, "k": "x", "u": "https://evil.example/phish"}, secret="guess", purpose="click"
    )
    swapped = tokens.sign(
        {"c": cid, "k": "x", "u": "https://evil.example/phish"},
        secret=stack.settings.secret_key,
        purpose="open",  # a valid token for another purpose
    )
    for bad in (
        f"/t/c/{evil}",
        f"/t/c/{swapped}",
        f"/t/c/{body}x.{mac}",
        f"/t/c/{body}.{mac[:-2]}AA",
        "/t/c/not-a-token",
        f"/t/o/{body}.{mac}",  # a click token is no open token
        "/u/" + token,
    ):
        answer = await http.get(bad)
        assert answer.status_code == 404, bad
        assert "location" not in answer.headers
    assert (
        await http.post("/u/not-a-token", content=b"List-Unsubscribe=One-Click")
    ).status_code == 404
    assert [e.name for e in await _events(stack, cid)] == ["Cart Updated"]
    await handle.terminate("test done")


async def test_one_click_unsubscribe_during_cart_recovery_stops_every_further_email(http, stack):
    cid = stack.new_customer_id()
    handle, mail = await _first_reminder(stack, cid)
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = mail["List-Unsubscribe"].strip("<>")

    page = await http.get(_path(url))
    assert page.status_code == 200 and "<form" in page.text and "cart recovery" in page.text

    answer = await http.post(
        _path(url),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # no cookie, no login, no write key
    assert answer.status_code == 200

    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.outcome == "unsubscribed"
    async with stack.sessions() as s:
        customer = await s.get(Customer, cid)
        suppression = await s.get(Suppression, email_for(cid))
    assert customer is not None and customer.subscribed is False
    assert suppression is not None and suppression.reason == "unsubscribed"

    # A new cart later sends nothing either: the gate knows.
    handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.outcome == "unsubscribed"
    assert len(stack.catcher.to(email_for(cid))) == 1


async def test_unsubscribing_from_one_journey_only_keeps_the_rest(http, stack):
    cid = stack.new_customer_id()
    handle, mail = await _first_reminder(stack, cid)
    url = mail["List-Unsubscribe"].strip("<>")
    answer = await http.post(_path(url), data={"scope": "journey"})
    assert answer.status_code == 200 and "cart recovery emails" in answer.text

    result = await asyncio.wait_for(handle.result(), timeout=PATIENCE)
    assert result.outcome == "unsubscribed"
    async with stack.sessions() as s:
        customer = await s.get(Customer, cid)
    assert customer is not None and customer.subscribed is True
    assert customer.attributes["unsubscribed_journeys"] == ["cart_recovery"]


async def test_bounces_and_complaints_suppress_the_address(http, stack):
    soft, hard, spam = (stack.new_customer_id() for _ in range(3))
    for cid in (soft, hard, spam):
        await add_customer(stack, cid)
    running = await abandon_cart(stack, hard, TEE)

    def track(cid: str, event: str, **props: Any) -> dict[str, Any]:
        return {"userId": cid, "event": event, "properties": props}

    for n in range(3):
        answer = await http.post(
            "/v1/track", json=track(soft, "Email Bounced", type="soft"), headers=BEARER
        )
        assert answer.status_code == 200
        async with stack.sessions() as s:
            suppressed = await s.get(Suppression, email_for(soft))
        assert (suppressed is not None) == (n == 2), n  # the third soft bounce in a row
    await http.post("/v1/track", json=track(hard, "Email Bounced", type="hard"), headers=BEARER)
    await http.post("/v1/track", json=track(spam, "Email Marked as Spam"), headers=BEARER)

    async with stack.sessions() as s:
        reasons = {
            cid: (await s.get(Suppression, email_for(cid))).reason for cid in (soft, hard, spam)
        }
    assert reasons == {soft: "soft_bounce_limit", hard: "hard_bounce", spam: "complaint"}
    result = await asyncio.wait_for(running.result(), timeout=PATIENCE)
    assert result.outcome == "hard_bounce"


async def test_healthz_reports_each_part(http, stack):
    # a worker just started is seen polling once its first poll reaches the server
    answer = await eventually(lambda: http.get("/healthz"), lambda a: a.status_code == 200)
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"worker_pollers": 1} == {
        "temporal": "ok",
        "database": "ok",
        "smtp": "ok",
        "workers": "ok",
        "worker_pollers": 1,
    }

    stack.catcher.stop()
    try:
        answer = await http.get("/healthz")
    finally:
        stack.catcher.start()
    assert answer.status_code == 503
    assert answer.json()["smtp"].startswith("error")
    assert answer.json()["temporal"] == "ok"


async def test_openapi_docs_are_served(http):
    assert (await http.get("/docs")).status_code == 200
    spec = (await http.get("/openapi.json")).json()
    assert {"/v1/identify", "/v1/track", "/v1/batch", "/healthz"} <= set(spec["paths"])
