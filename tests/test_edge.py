"""The edge as a hostile client, a mail provider and an analytics library meet it: the write
key before the body, Segment's size limits (gzip too), nesting, control characters, every
call type in a batch, tracking links with the store down, the "keep writing to me" page,
placeholder secrets and a cheap /healthz."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from core import tokens
from core.ids import send_key, win_back_id
from core.links import Links
from core.zones import zone_at_local_hour
from settings import Settings
from starter.api import Journeys
from starter.http import create_app
from starter.http.segment import ANONYMOUS
from store.db import make_engine, make_session_factory
from store.models import Cart, Customer, Event
from testkit.data import TEE, add_customer, email_for
from testkit.stack import SECRET, WRITE_KEY, Stack
from testkit.waiting import eventually_passes

BEARER = {"Authorization": f"Bearer {WRITE_KEY}"}
MB = 1024 * 1024


async def _names(stack: Stack, cid: str) -> list[str]:
    async with stack.sessions() as s:
        query = select(Event.name).where(Event.customer_id == cid).order_by(Event.id)
        return list((await s.scalars(query)).all())


def _identify(cid: str | int, **traits: Any) -> dict[str, Any]:
    base = {"email": email_for(str(cid)), "firstName": "Ada", "timezone": zone_at_local_hour(11)}
    return {"type": "identify", "userId": cid, "traits": {**base, **traits}}


def _checkout(cid: str) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": cid,
        "event": "Checkout Started",
        "properties": {"products": [TEE], "checkout_url": f"https://shop.test/co/{cid}"},
    }


class Chunks:
    """A request body sent in 1 MB chunks that counts how many the server pulled."""

    def __init__(self, megabytes: int) -> None:
        self.total = megabytes
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.total):
            self.pulled += 1
            yield b"[" * MB


# -- the write key before the body -----------------------------------------------------------


async def test_a_20_mb_body_without_the_key_is_refused_401_without_being_read(http):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        body = Chunks(20)
        answer = await http.post(
            "/v1/batch", content=body, headers={**headers, "Content-Length": str(20 * MB)}
        )
        assert answer.status_code == 401, answer.text
        assert body.pulled == 0
    body = Chunks(20)  # no length declared, no key: read up to the limit, not past it
    answer = await http.post("/v1/batch", content=body)
    assert answer.status_code == 401
    assert body.pulled == 1


async def test_malformed_json_without_credentials_is_401_and_with_them_422(http):
    for path in ("/v1/identify", "/v1/track", "/v1/batch"):
        answer = await http.post(path, content=b"{not json", headers={"Content-Type": "x"})
        assert answer.status_code == 401, (path, answer.text)
        assert "write key" in answer.json()["detail"]
        answer = await http.post(path, content=b"{not json", headers=BEARER)
        assert answer.status_code == 422
        (error,) = answer.json()["detail"]
        assert error["type"] == "json_invalid" and error["loc"] == ["body", 1]


async def test_the_write_key_may_come_in_the_body_as_segment_libraries_also_send_it(http, stack):
    cid = stack.new_customer_id()
    batch = {"batch": [_identify(cid)], "writeKey": WRITE_KEY}
    assert (await http.post("/v1/batch", json=batch)).status_code == 200
    single = {**_identify(cid, lastName="L"), "writeKey": WRITE_KEY}
    assert (await http.post("/v1/identify", json=single)).status_code == 200
    wrong = {"batch": [_identify(stack.new_customer_id())], "writeKey": "nope"}
    assert (await http.post("/v1/batch", json=wrong)).status_code == 401
    assert await _names(stack, cid) == ["Identify", "Identify"]


# -- sizes: Segment's 32 KB per call, 500 KB per batch -------------------------------------


async def test_bodies_over_segments_limits_get_413_saying_so(http, stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    big = {"userId": cid, "event": "Big", "properties": {"blob": "x" * 33_000}}
    answer = await http.post("/v1/track", json=big, headers=BEARER)
    assert answer.status_code == 413
    assert "32 KB" in answer.json()["detail"]

    one_big_call = {"batch": [_identify(cid), {**big, "type": "track"}]}
    answer = await http.post("/v1/batch", json=one_big_call, headers=BEARER)
    assert answer.status_code == 413
    assert answer.json()["detail"].startswith("call 1 of the batch is over 32 KB")

    call = {"type": "track", "userId": cid, "event": "E", "properties": {"p": "x" * 20_000}}
    answer = await http.post("/v1/batch", json={"batch": [call] * 30}, headers=BEARER)
    assert answer.status_code == 413 and "500 KB" in answer.json()["detail"]

    body = Chunks(20)  # with the key, no length declared: refused while streaming
    answer = await http.post("/v1/batch", content=body, headers=BEARER)
    assert answer.status_code == 413 and body.pulled == 1
    assert await _names(stack, cid) == []


async def test_gzip_bodies_are_read_and_a_gzip_bomb_is_not_inflated_past_the_limit(http, stack):
    cid = stack.new_customer_id()
    headers = {**BEARER, "Content-Encoding": "gzip", "Content-Type": "application/json"}
    packed = gzip.compress(json.dumps({"batch": [_identify(cid)]}).encode())
    answer = await http.post("/v1/batch", content=packed, headers=headers)
    assert answer.status_code == 200, answer.text

    bomb = gzip.compress(b'{"batch": [' + b" " * (64 * MB) + b"]}", compresslevel=9)
    assert len(bomb) < 100 * 1024  # 64 MB of JSON in under 100 KB: within the wire limit
    answer = await http.post("/v1/batch", content=bomb, headers=headers)
    assert answer.status_code == 413
    assert "inflated from gzip" in answer.json()["detail"]

    answer = await http.post("/v1/batch", content=b"not gzip at all", headers=headers)
    assert answer.status_code == 400
    answer = await http.post(
        "/v1/batch", content=b"{}", headers={**BEARER, "Content-Encoding": "br"}
    )
    assert answer.status_code == 415
    assert await _names(stack, cid) == ["Identify"]


# -- shapes: nesting, batch length, control characters ---------------------------------------


async def test_deep_nesting_is_422_naming_the_field_never_a_5xx(http, stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    nested: Any = "bottom"
    for _ in range(300):
        nested = {"a": nested}
    call = {"userId": cid, "event": "Deep", "properties": nested}
    answer = await http.post("/v1/track", json=call, headers=BEARER)
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["type"] == "too_deep"
    assert error["loc"][:4] == ["body", "properties", "a", "a"]

    raw = b'{"batch": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"  # past what a parser recurses
    answer = await http.post("/v1/batch", content=raw, headers=BEARER)
    assert answer.status_code == 422 and answer.json()["detail"][0]["type"] == "too_deep"
    assert await _names(stack, cid) == []


async def test_the_batch_length_is_checked_before_any_call_is_validated(http):
    many = b'{"batch": [' + b",".join([b"{}"] * 150_000) + b"]}"  # 450 KB of empty calls
    answer = await http.post("/v1/batch", content=many, headers=BEARER)
    assert answer.status_code == 422
    # Validated first, the first call would have been named (it has no type).
    assert answer.json()["detail"] == [
        {
            "loc": ["body", "batch"],
            "msg": "at most 100 calls per batch, got 150000",
            "type": "too_long",
        }
    ]


@pytest.mark.parametrize(
    ("call", "loc"),
    [
        (
            _identify("CID", firstName="Ada\r\nBcc: everyone@example.com"),
            ["traits", "firstName"],
        ),
        (_identify("CID", lastName="Love\x00lace"), ["traits", "lastName"]),
        (_identify("CID", first_name="Ada\n"), ["traits", "first_name"]),
        (
            {"type": "identify", "userId": "CID", "context": {"traits": {"firstName": "A\rB"}}},
            ["context", "traits", "firstName"],
        ),
        (
            {
                "type": "track",
                "userId": "CID",
                "event": "Product Added",
                "properties": {**TEE, "name": "Blue\x0bT-shirt"},
            },
            ["properties", "name"],
        ),
        (
            {
                "type": "track",
                "userId": "CID",
                "event": "Checkout Started",
                "properties": {"products": [TEE, {**TEE, "name": "Mug\u2028"}]},
            },
            ["properties", "products", 1, "name"],
        ),
        ({"type": "track", "userId": "CID", "event": "Signed\nUp"}, ["event"]),
    ],
)
async def test_control_characters_in_header_bound_fields_are_422_naming_the_field(
    http, stack, call: dict[str, Any], loc: list[Any]
):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    call = json.loads(json.dumps(call).replace("CID", cid))
    path = f"/v1/{call['type']}"
    for where, url, body in (
        (["body"], path, call),
        (["body", "batch", 1], "/v1/batch", {"batch": [_identify(cid), call]}),
    ):
        answer = await http.post(url, json=body, headers=BEARER)
        assert answer.status_code == 422, answer.text
        (error,) = answer.json()["detail"]
        assert error["loc"] == [*where, *loc]
        assert error["type"] == "control_character"
    async with stack.sessions() as s:
        customer = await s.get(Customer, cid)
    assert customer is not None and customer.first_name == "Ada"
    assert await _names(stack, cid) == []


# -- every call type, anonymous calls ------------------------------------------------------


async def test_a_batch_as_analytics_libraries_send_it_keeps_the_identify_and_the_cart(http, stack):
    cid = stack.new_customer_id()
    batch = {
        "batch": [
            _identify(cid),
            {"type": "page", "userId": cid, "name": "Home", "properties": {"path": "/"}},
            {
                "type": "track",
                "anonymousId": "anon-1",
                "event": "Product Viewed",
                "properties": TEE,
            },
            _checkout(cid),
            {"type": "screen", "userId": cid, "name": "Cart"},
            {"type": "group", "userId": cid, "groupId": "g-1", "traits": {"name": "Shop"}},
            {"type": "alias", "userId": cid, "previousId": "anon-1"},
            {"type": "identify", "anonymousId": "anon-2", "traits": {"email": "x@example.com"}},
        ]
    }
    answer = await http.post("/v1/batch", json=batch, headers=BEARER)
    assert answer.status_code == 200, answer.text
    actions = [r["action"] for r in answer.json()["results"]]
    assert actions[0] == "recorded"
    assert actions[1] == "ignored: page calls are not used"
    assert actions[2] == ANONYMOUS
    assert not actions[3].startswith("ignored")
    assert actions[4:] == [
        "ignored: screen calls are not used",
        "ignored: group calls are not used",
        "ignored: alias calls are not used",
        ANONYMOUS,
    ]
    assert await _names(stack, cid) == ["Identify", "Cart Updated"]
    async with stack.sessions() as s:
        assert await s.get(Cart, cid) is not None
    handle = stack.client.get_workflow_handle(f"cart-recovery:{cid}")
    await eventually_passes(lambda: handle.terminate("test done"))  # it may start a bit later


async def test_single_calls_of_every_type_are_answered(http, stack):
    cid = stack.new_customer_id()
    for kind in ("page", "screen", "group", "alias"):
        answer = await http.post(f"/v1/{kind}", json={"userId": cid}, headers=BEARER)
        assert answer.status_code == 200
        assert answer.json() == {
            "success": True,
            "duplicate": False,
            "action": f"ignored: {kind} calls are not used",
        }
    answer = await http.post(
        "/v1/track", json={"anonymousId": "a", "event": "Signed Up"}, headers=BEARER
    )
    assert answer.json()["action"] == ANONYMOUS
    answer = await http.post("/v1/track", json={"event": "Signed Up"}, headers=BEARER)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "userId"]
    answer = await http.post("/v1/batch", json={"batch": [{"type": "pag"}]}, headers=BEARER)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "batch", 0, "type"]


async def test_rudderstack_traits_in_context_make_the_profile(http, stack):
    cid = stack.new_customer_id()
    call = {
        "userId": cid,
        "anonymousId": None,
        "context": {"traits": {"email": email_for(cid), "firstName": "Ada", "plan": "gold"}},
    }
    answer = await http.post("/v1/identify", json=call, headers=BEARER)
    assert answer.status_code == 200, answer.text
    async with stack.sessions() as s:
        customer = await s.get(Customer, cid)
    assert customer is not None
    assert (customer.email, customer.first_name) == (email_for(cid), "Ada")
    assert customer.attributes["plan"] == "gold"


async def test_a_numeric_user_id_is_taken_as_its_text(http, stack):
    number = int(stack.new_customer_id().removeprefix("c-"), 16)
    answer = await http.post("/v1/identify", json=_identify(number), headers=BEARER)
    assert answer.status_code == 200, answer.text
    async with stack.sessions() as s:
        assert await s.get(Customer, str(number)) is not None


# -- the store down ------------------------------------------------------------------------


@pytest.fixture
async def store_down(stack: Stack, tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    """The API with a store that cannot be opened (Temporal and the rest as they are)."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/journeys.db")
    journeys = Journeys(
        client=stack.client, sessions=make_session_factory(engine), settings=stack.settings
    )
    app = create_app(stack.settings, journeys=journeys)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as client:
        yield client
    await engine.dispose()


async def test_pixel_and_redirect_answer_even_when_the_store_is_down(store_down):
    links = Links(base_url="https://shop.test", secret=SECRET)
    key = send_key("cart-recovery:c-1", "run", "reminder_1")
    pixel = links.open_pixel(customer_id="c-1", send_key=key).removeprefix("https://shop.test")
    click = links.click(customer_id="c-1", send_key=key, url="https://shop.test/p/1")
    opened = await store_down.get(pixel)
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
    clicked = await store_down.get(click.removeprefix("https://shop.test"))
    assert clicked.status_code == 302
    assert clicked.headers["location"] == "https://shop.test/p/1"


async def test_ingestion_with_the_store_down_is_503_without_error_text(store_down):
    answer = await store_down.post("/v1/identify", json=_identify("c-1"), headers=BEARER)
    assert answer.status_code == 503
    assert answer.json() == {"detail": "the store is unavailable; nothing was recorded, retry"}
    assert answer.headers["retry-after"]


# -- "keep writing to me": a page with a button, and an expiry -----------------------------


async def test_the_stay_link_shows_a_page_acts_on_post_only_and_expires(http, stack):
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    key = send_key(win_back_id(cid, datetime(2026, 1, 1, tzinfo=UTC)), "run", "last_call")
    links = Links(base_url="https://shop.test", secret=SECRET)
    path = links.stay(customer_id=cid, send_key=key).removeprefix("https://shop.test")

    page = await http.get(path)  # what a link scanner does
    assert page.status_code == 200
    assert '<form method="post">' in page.text and "<button" in page.text
    assert await _names(stack, cid) == []

    done = await http.post(path)
    assert done.status_code == 200 and "keep getting our emails" in done.text
    assert await _names(stack, cid) == ["Email Link Clicked"]

    sent_long_ago = time.time() - 61 * 86400
    old = links.stay(customer_id=cid, send_key=key, now=sent_long_ago)
    never_expiring = "/s/" + tokens.sign({"c": cid, "k": key}, secret=SECRET, purpose="stay")
    for stale in (old.removeprefix("https://shop.test"), never_expiring):
        for answer in (await http.get(stale), await http.post(stale)):
            assert answer.status_code == 410
            assert "expired" in answer.text and "Nothing was changed" in answer.text
    assert (await http.post(path + "x")).status_code == 404
    assert await _names(stack, cid) == ["Email Link Clicked"]


# -- settings and health -------------------------------------------------------------------


def test_placeholder_secrets_are_refused_unless_the_environment_says_development_or_test(
    monkeypatch,
):
    for name in ("ENVIRONMENT", "SECRET_KEY", "API_WRITE_KEY"):
        monkeypatch.delenv(name, raising=False)
    shop: dict[str, Any] = {  # what production requires besides the secrets
        "shop_url": "https://shop.example.com",
        "shop_name": "Example Shop",
        "shop_postal_address": "1 Main St, Springfield",
        "shop_support_email": "help@shop.example.com",
    }
    with pytest.raises(ValidationError, match=r"SECRET_KEY.*unset ENVIRONMENT is production"):
        Settings(_env_file=None, **shop)
    with pytest.raises(ValidationError, match="API_WRITE_KEY is a placeholder"):
        Settings(_env_file=None, secret_key="s" * 32, **shop)
    for environment in ("development", "test"):
        assert Settings(_env_file=None, environment=environment).environment == environment
    try:
        Settings(_env_file=None, secret_key="s" * 32, api_write_key="k" * 32, **shop)
    except ValidationError as other_requirement:  # e.g. encryption keys: not this test's
        assert "SECRET_KEY" not in str(other_requirement)
        assert "API_WRITE_KEY" not in str(other_requirement)


class CountingSmtp:
    """An SMTP server that greets, says goodbye and counts connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.write(b"220 counting ESMTP\r\n")
            while line := await reader.readline():
                writer.write(b"221 bye\r\n" if line.upper().startswith(b"QUIT") else b"250 ok\r\n")
                await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])


async def test_healthz_is_cheap_and_says_reachable_or_not_without_error_text(stack):
    smtp = CountingSmtp()
    port = await smtp.start()
    settings = stack.settings.model_copy(update={"smtp_port": port, "health_probe_seconds": 60})
    app = create_app(settings, journeys=stack.journeys)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as http:
        answers = await asyncio.gather(*(http.get("/healthz") for _ in range(50)))
        assert {a.status_code for a in answers} == {200}
        said = answers[0].json()
        assert said.pop("worker_pollers") >= 1  # the stack's worker
        assert said == {"temporal": "ok", "database": "ok", "smtp": "ok", "workers": "ok"}
        assert smtp.connections == 1  # one probe for fifty requests

    assert smtp.server is not None
    smtp.server.close()
    await smtp.server.wait_closed()
    down = settings.model_copy(update={"health_probe_seconds": 0})
    transport = httpx.ASGITransport(app=create_app(down, journeys=stack.journeys))
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as http:
        answer = await http.get("/healthz")
    assert answer.status_code == 503
    assert answer.json() == {
        "temporal": "ok",
        "database": "ok",
        "smtp": "error: unreachable",
        "workers": "ok",
        "worker_pollers": answer.json()["worker_pollers"],
    }
